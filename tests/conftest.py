"""Project-wide test options: slow tests run only in the slow job (FLYTOMO_SLOW=1)."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("FLYTOMO_SHARED", Path(__file__).resolve().parents[2] / "shared"))

# Started in the background by a script (`cmd &`), pytest inherits SIGINT ignored, and so would every
# command a test starts: the Ctrl-C tests' commands would never hear it. A user's terminal sends it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("FLYTOMO_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow test: run with FLYTOMO_SLOW=1 (the slow job)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
