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


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """This CPU taken as computing bfloat16 in hardware, so that the bfloat16 paths run (and are
    tested) on one that does not, where flytomo otherwise uses float32 (recon.device)."""
    import recon.device

    monkeypatch.setattr(recon.device, "cpu_has_fast_bf16", lambda: True)


@pytest.fixture
def no_bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """This CPU taken as one without bfloat16 arithmetic, whatever it has."""
    import recon.device

    monkeypatch.setattr(recon.device, "cpu_has_fast_bf16", lambda: False)
