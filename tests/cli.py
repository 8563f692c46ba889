"""flytomo's command line run inside the test process (CI time: a new interpreter takes seconds
to import torch)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _to_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    import warnings

    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def cli_in_process(*args: str) -> subprocess.CompletedProcess:
    """``flytomo ARGS`` run by ``hpc.cli.main`` in this process, as a subprocess would see it: its
    stdout, stderr (warnings as the command prints them, each once) and exit code, without the
    2-4 s a new interpreter takes to import torch (CI time). Torch's thread count and the signal
    handlers a command sets are put back after it. For what needs a process of its own (signals,
    ``cwd``, ``env``, ``sys.argv`` as recorded), use subprocess."""
    import contextlib
    import io
    import signal
    import warnings

    import torch

    from hpc.cli import main

    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    formatwarning = warnings.formatwarning
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.resetwarnings()
            warnings.simplefilter("default")
            warnings.showwarning = _to_stderr  # as a new interpreter shows them, not into pytest's record
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse's usage errors
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    finally:
        torch.set_num_threads(threads)
        for s, h in handlers.items():
            signal.signal(s, h)
        warnings.formatwarning = formatwarning
    return subprocess.CompletedProcess(["flytomo", *args], code, out.getvalue(), err.getvalue())


def sigterm_after_a_chunk(argv: list[str], cwd: Path, marks: Path, env: dict, polls: int = 1200
                          ) -> tuple[int, str, list[str]]:
    """Run ``argv`` (a flytomo command, in a process of its own) in ``cwd`` and send it SIGTERM as
    soon as ``marks`` (a store in progress's ``.rows_done``) holds a chunk, or it ends (polled
    every 0.05 s, ``polls`` times at most), as scancel or a time limit would; (exit code, stderr,
    the chunks marked done)."""
    import signal
    import time

    proc = subprocess.Popen(argv, cwd=cwd, stderr=subprocess.PIPE, text=True, env=env)
    for _ in range(polls):
        if (marks.is_dir() and any(marks.iterdir())) or proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    return proc.returncode, err, sorted(p.name for p in marks.iterdir())
