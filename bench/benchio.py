"""What the bench scripts share: a timed run under ``--json FILE``, and writing its result as
JSON beside the table they print."""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def save_json(path: Path | None, result: Any, indent: int = 2) -> None:
    """Write ``result`` to ``path`` as indented JSON (its folder made); nothing where path is None."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent) + "\n")


def timed_run(doc: str, run: Callable[[], dict], argv: list[str] | None = None) -> tuple[dict, argparse.Namespace]:
    """Parse ``--json FILE`` (the script's ``doc`` as help), call ``run()`` on 2 torch threads
    and add its wall time to the result as ``"seconds"``: (result, the parsed arguments)."""
    import torch

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    result = run()
    result["seconds"] = time.perf_counter() - t0
    return result, args


def run_and_save(doc: str, run: Callable[[], dict], argv: list[str] | None = None) -> int:
    """A bench script's ``main``: :func:`timed_run`, then the result saved under ``--json``; 0."""
    result, args = timed_run(doc, run, argv)
    save_json(args.json, result)
    return 0
