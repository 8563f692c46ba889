"""The ``flytomo`` subcommands, one module each; here what their flag parsing shares."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, Collection

from recon.errors import FlytomoError


def word_or_number(text: str, flag: str, words: Collection[str], number: Callable[[str], Any],
                   ok: Callable[[Any], bool], expected: str) -> Any:
    """A flag that takes one of ``words`` (returned as given) or a number ``number(text)``
    (``int`` or ``float``) for which ``ok`` holds; anything else raises FlytomoError
    "FLAG must be EXPECTED, got 'TEXT'" (one line, exit 2)."""
    if text in words:
        return text
    try:
        value = number(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise FlytomoError(None, f"{flag} must be {expected}, got {text!r}")
    return value


def timezone_flag(text: str | None) -> str | None:
    """``--timezone``: None, or a clock for date-times written without a zone
    (:func:`recon.io.metadata.parse_zone`); anything else FlytomoError (one line, exit 2)."""
    from recon.io.metadata import parse_zone

    if text is not None:
        try:
            parse_zone(text)
        except ValueError as err:
            raise FlytomoError(None, f"--timezone: {err}") from None
    return text


TIMEZONE_HELP = ("the clock of date-times written without a zone, in the scan files and the log: an offset "
                 "(+01:00), a region (Europe/Berlin) or UTC (default: UTC, with a warning where it matters)")


def zoom_flag(text: str | None, flag: str) -> float | str | None:
    """A network's zoom flag: None (not given), 'auto' or a number from 1 to
    :data:`recon.infer.MAX_ZOOM`; anything else FlytomoError (one line, exit 2)."""
    from recon.infer import MAX_ZOOM

    if text is None:
        return None
    if text.strip().lower() == "auto":
        return "auto"
    return word_or_number(text, flag, ("auto",), float, lambda v: 1.0 <= v <= MAX_ZOOM,
                          f"'auto' or a number from 1 to {MAX_ZOOM:g}")


def zoom_summary(zoomed: list[float]) -> str:
    """One line on a network zoom given as a number (``recon --method rrdb``, ``enhance``): the
    zoom, or how many slices went through at which where they differ."""
    if len(set(zoomed)) == 1:
        return f"network zoom {zoomed[0]:g} (given): every slice at this zoom"
    parts = [f"{zoomed.count(z)} of {len(zoomed)} slice(s) at {z:g}" for z in sorted(set(zoomed), reverse=True)]
    return "network zoom: " + ", ".join(parts) + " (zoom changes crack contrast: compare scans at one zoom)"


def zoom_choice_line(choice: Any, where: str, flag: str) -> str:
    """One line on the network zoom ``choice`` (a :class:`recon.infer.ZoomChoice`) judged for a
    whole scan or volume (``where``: ", judged on ..." or ""); ``flag`` pins it."""
    return f"network zoom {choice.words()}{where}: every slice at this zoom ({flag} 1 or 1.5 pins it)"


@dataclass
class Written:
    """The slices of a command's volume written so far (``recon``, ``enhance`` into a .zarr):
    what a stop keeps (slices are written a chunk at a time, whole)."""

    done: int = 0
    total: int = 0
    #: how to lose less at the next stop, said where no chunk was finished
    smaller: str = "--chunk-rows smaller loses less"

    def words(self) -> str:
        """What a stopped command says after "stopped: "."""
        if not self.total:
            return "nothing was written yet; run the same command again"
        if not self.done:
            return (f"no chunk of slices was finished, so nothing is kept (each is written whole; {self.smaller}); "
                    "run the same command again")
        return f"{self.done} of {self.total} slices are written and kept; run the same command again to write the rest"


def _finished_volume_attrs(out: Any) -> dict | None:
    """The attributes of the finished flytomo volume ``out``, or None where it is none."""
    from recon.io import open_volume

    try:
        return open_volume(out)[1]
    except Exception:  # not a finished volume of flytomo's: the caller refuses it
        return None


def made_by_this_command(out: Any, input_path: str, fingerprint: Callable[[], str | None], **same: Any) -> bool:
    """Whether the finished volume ``out`` records this command line, ``input_path`` (resolved),
    each value of ``same`` (the code or version that made it) and the input's ``fingerprint()``
    (read last, only where the rest agree): the same command run again after it finished, which
    says so and exits 0 (``recon``, ``enhance``; blind probe AC: it was refused, "already exists")."""
    from pathlib import Path

    if (attrs := _finished_volume_attrs(out)) is None:
        return False
    return (attrs.get("command") == " ".join(sys.argv) and attrs.get("input") == str(Path(input_path).resolve())
            and all(attrs.get(k) == v for k, v in same.items()) and attrs.get("input_fingerprint") == fingerprint())


def already_there(out: Any) -> str:
    """Why ``out`` is refused where it exists and is not this command's finished volume (probe
    AH: "already exists" for a volume finished with other settings did not say so): the command
    that made it, where it records one."""
    made = (_finished_volume_attrs(out) or {}).get("command")
    if isinstance(made, str) and made:
        return (f"holds a finished volume made by another command or from another input ({made}); a finished "
                "volume is not begun again with other settings: pass --overwrite to replace it, or give another --out")
    return "already exists; pass --overwrite to replace it"


def first_line(doc: str | None) -> str:
    """A module docstring's first line as ``--help`` shows it: without reST's double backquotes."""
    return (doc or "").strip().splitlines()[0].replace("``", "")


def exit_on_sigterm(what_then: str | Callable[[], str]) -> None:
    """Turn SIGTERM (Slurm's time limit, ``scancel``) into SystemExit(143) with the line
    "flytomo: stopped by SIGTERM: <what_then>" (a callable: its words at that moment), so that
    ``finally`` and ``except`` blocks run (locks released, partial outputs removed). Only from the
    main thread. A second SIGTERM is ignored: Slurm's time limit, ``timeout`` and ``kill`` of a
    process group deliver it twice (srun forwards it and the step gets it too), and raised again
    inside that clean-up it cut the wait for a unit still in torch, which aborted the process
    ("terminate called without an active exception", exit 6; blind probes AE and AF). SIGKILL
    still ends it (Slurm sends it after KillWait)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        def _exit(signum, frame):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the clean-up runs to its end
            if mpi_rank() == 0:  # once for a run of many ranks, each of which gets the signal
                print(f"flytomo: stopped by SIGTERM: {what_then() if callable(what_then) else what_then}",
                      file=sys.stderr)
            raise SystemExit(128 + signum)
        signal.signal(signal.SIGTERM, _exit)


def use_threads(n: int | None) -> None:
    """``--threads N`` of a one-process command: N ≥ 1 CPU threads for torch (FlytomoError
    otherwise), a warning where N is more than the machine's cores; None leaves torch's default."""
    import os
    import warnings

    from hpc.executors.base import set_torch_threads

    if n is None:
        return
    if n < 1:
        raise FlytomoError(None, f"--threads must be ≥ 1, got {n}")
    cores = os.cpu_count() or n
    if n > cores:
        warnings.warn(f"--threads {n} is more than this machine's {cores} CPU cores: the threads contend for them",
                      stacklevel=2)
    set_torch_threads(n)


def device_flag(given: str | None) -> str:
    """``--device`` of ``recon`` and ``enhance``: as given, else ``"cpu"``, with a note on stderr
    where torch sees a CUDA GPU (the default stays the CPU, whose results are the same on every
    machine; ``train`` and ``run`` take theirs from the config)."""
    if given is not None:
        return given
    import torch

    if torch.cuda.is_available():
        print(f"flytomo: note: torch sees a CUDA GPU ({torch.cuda.get_device_name(0)}); this runs on the CPU, the "
              "default: --device cuda runs it on the GPU", file=sys.stderr)
    return "cpu"


def _launcher_number(names: tuple[str, ...], default: int) -> int:
    """The first of the environment variables ``names`` an MPI launcher set, as an int; else ``default``."""
    import os

    for var in names:
        try:
            return int(os.environ[var])
        except (KeyError, ValueError):
            continue
    return default


def mpi_rank() -> int:
    """This process's rank among those the MPI launcher around it started (0 without one):
    PMI_RANK (MPICH/Hydra, srun --mpi=pmi2), OMPI_COMM_WORLD_RANK (Open MPI), PMIX_RANK."""
    return max(0, _launcher_number(("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"), 0))


def mpi_ranks() -> int:
    """How many ranks the MPI launcher around this process started (1 without one): MPICH/Hydra
    and PMI set PMI_SIZE, Open MPI OMPI_COMM_WORLD_SIZE, PMIx PMIX_SIZE."""
    return max(1, _launcher_number(("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"), 1))
