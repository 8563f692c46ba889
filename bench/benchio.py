"""What the bench scripts share: writing a result as JSON beside the table they print."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save_json(path: Path | None, result: Any, indent: int = 2) -> None:
    """Write ``result`` to ``path`` as indented JSON (its folder made); nothing where path is None."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent) + "\n")
