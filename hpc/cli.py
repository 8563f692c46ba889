"""The ``flytomo`` command. Each subcommand lives in its own module under ``hpc/commands``.

A module there defines ``register(subparsers) -> None``; the parser it adds sets
``func=callable(args) -> int``. Bad input raises :class:`recon.errors.FlytomoError`, which
this entry point turns into one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import re
import sys
import warnings
from pathlib import Path

import recon
from recon.errors import NO_ROOM_ERRNOS, FlytomoError

#: subcommand modules, in the order ``flytomo --help`` lists them
COMMANDS = (
    "recon", "enhance", "simulate", "train", "init", "check", "run", "demo", "submit", "analyze",
    "simulate_experiment",
)


class OneLineParser(argparse.ArgumentParser):
    """Bad flags end in one line naming the problem (and where to get help: the command's own
    ``--help``), exit code 2. Files left over (an unquoted glob the shell expanded) are said to be."""

    _argv: list[str] = []

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        OneLineParser._argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
        return super().parse_args(args, namespace)

    def error(self, message: str):  # type: ignore[override]
        prog = self.prog
        if prog == "flytomo":  # leftovers are reported by the top parser: point to the command's help
            command = next((a for a in OneLineParser._argv if not a.startswith("-")), None)
            if command in COMMANDS or (command or "").replace("-", "_") in COMMANDS:
                prog = f"flytomo {command}"
            extra = message.removeprefix("unrecognized arguments: ").split()
            if message.startswith("unrecognized arguments: ") and extra and all(Path(e).exists() for e in extra):
                message += (" (the shell expanded an unquoted pattern into several files? quote it, as "
                            "'raw/*.h5', so that flytomo reads the pattern)")
        self.exit(2, f"{self.prog}: error: {message} (see {prog} --help)\n")


class DefaultsFormatter(argparse.HelpFormatter):
    """``--help`` that names each option's default, where its help does not already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS)
                and "default" not in text.lower() and "%(default)" not in text):
            text += (" " if text else "") + "(default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="flytomo",
        description="Fly-scan nano-tomography of in-situ experiments: reconstruct raw scans "
                    "(FBP, MLEM, modified MLEM, RRDB), analyse cracks against temperature, "
                    "on a laptop or a Slurm cluster.")
    parser.add_argument("--version", action="version", version=f"flytomo {recon.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"hpc.commands.{name}")
        except ModuleNotFoundError as err:  # a command whose module is not written yet
            if err.name == f"hpc.commands.{name}":
                continue
            raise
        module.register(sub)
    for command in sub.choices.values():
        command.formatter_class = DefaultsFormatter
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings on the command line: one line each, no source location."""
    return f"flytomo: warning: {message}\n"


def _file_and_gist(text: str) -> tuple[str, str] | None:
    """'raw/scan_0007.h5: dead detector pixels …' → ('raw/scan_0007.h5', 'dead detector pixels …');
    None for a message that does not start with a file name."""
    head, sep, gist = text.partition(": ")
    named = Path(head).suffix and (" " not in Path(head).name or Path(head).is_file())  # 'scan 01.h5' too
    return (head, gist) if sep and gist and named else None


#: a number in a warning's text: messages that differ only in numbers (a pad, a ratio, a
#: column) are one kind of problem, counted together
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _once_per_message(show):
    """``warnings.showwarning`` that prints a message once per command, however many places
    (the config check, the planner, the run) come upon the same file's problem, and a
    problem that every scan of an experiment shares (a dead detector column, a sample wider
    than the field: the same text up to its numbers) once for the first file; ``.summary()``
    gives one line per such problem with the count of the others (numbers that differ
    between the files shown as …). Where a run's log file is open (``flytomo.run`` has a
    handler), every distinct warning goes to it too: a blind probe's 150 repaired scans were
    named nowhere but for the first."""
    seen: set[str] = set()
    files_by_kind: dict[str, set[str]] = {}
    gists_by_kind: dict[str, list[str]] = {}

    run_log = logging.getLogger("flytomo.run")

    def showwarning(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if text in seen:
            return
        seen.add(text)
        if run_log.handlers:  # a run's log file is open: every file's warning in it, the terminal's summarised
            run_log.warning("%s", text)
        split = _file_and_gist(text)
        if split is not None:
            kind = _NUMBER.sub("#", split[1])
            files = files_by_kind.setdefault(kind, set())
            files.add(split[0])
            gists = gists_by_kind.setdefault(kind, [])
            if split[1] not in gists:
                gists.append(split[1])
            if len(files) > 1:
                return
        show(message, category, filename, lineno, file, line)

    def summary() -> list[str]:
        lines = []
        for kind, files in files_by_kind.items():
            if len(files) > 1:
                gists = gists_by_kind[kind]
                gist = gists[0] if len(gists) == 1 else _mask_differing_numbers(gists)
                lines.append(f"flytomo: warning: {len(files) - 1} more file(s) likewise: {gist}")
        return lines

    showwarning.summary = summary
    return showwarning


def _mask_differing_numbers(gists: list[str]) -> str:
    """The first of texts that differ only in their numbers, each number that is not the same
    in all of them written as …"""
    numbers = [_NUMBER.findall(g) for g in gists]
    same = [len({n[i] for n in numbers}) == 1 for i in range(len(numbers[0]))]
    parts = iter(same)
    return _NUMBER.sub(lambda m: m.group(0) if next(parts) else "…", gists[0])


#: errors of the file system that name a path (read-only, no permission, full, not a folder):
#: one line naming the path, exit 2, as for bad input
_FILE_SYSTEM_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                       errno.EISDIR, errno.ENAMETOOLONG, errno.ENOENT, errno.EFBIG}


def _interrupted_while_starting(signum: int, frame: object) -> None:
    """SIGINT while the commands' modules import: one line and exit 130 at once (nothing is
    written yet), never a KeyboardInterrupt raised inside an extension's C++ code, which
    aborted with "terminate called after throwing ..." under load)."""
    os.write(2, b"flytomo: interrupted\n")
    os._exit(130)


def _output_of(args: argparse.Namespace) -> str:
    """What the command writes, for an error that names no file (a full disk under zarr, PIL,
    tifffile): ``--out``, else a config's store (``run``), else "the output"."""
    if getattr(args, "out", None):
        return str(args.out)
    if getattr(args, "command", None) == "run" and getattr(args, "config", None):
        try:
            from hpc.config import load_experiment

            exp = load_experiment(args.config)
            return f"{exp.store_path} or its analysis folder {exp.analysis_out}"
        except Exception:  # the config itself is at fault: no place to name
            pass
    return "the output"


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _interrupted_while_starting) if main_thread else None
    try:  # the commands' modules import torch and friends: a second or more
        parser = build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C while starting: one line, as later (was a 50-line traceback)
        print("flytomo: interrupted", file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    warnings.formatwarning = _one_line_warning
    show = warnings.showwarning
    warnings.showwarning = once = _once_per_message(show)
    try:
        from recon.io._h5 import read_band_bytes  # here, not at import: `flytomo --help` reads no files

        read_band_bytes()  # FLYTOMO_READ_BAND_MB checked before any work
        if args.command in ("recon", "run", "demo"):  # FLYTOMO_OPERATOR_CACHE_GB too, where projectors are built
            from recon.operators import operator_cache_bytes

            operator_cache_bytes()
        from hpc.commands import exit_on_sigterm

        # SIGTERM (kill, scancel, timeout): finally blocks run and partial outputs go; a command with more
        # to say sets its own (in the main thread only, as exit_on_sigterm checks)
        exit_on_sigterm("what was not complete is not kept; run the same command again")
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at exit
        return code
    except FlytomoError as err:
        print(f"flytomo: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flytomo: interrupted", file=sys.stderr)
        return 130
    except MemoryError as err:  # numpy's names the array it could not allocate
        print(f"flytomo: error: out of memory ({str(err) or 'an allocation failed'}): fewer rows per chunk "
              "(--chunk-rows, rows_per_chunk), a smaller FLYTOMO_OPERATOR_CACHE_GB, or a machine with more memory; "
              "what was written is kept and the same command resumes", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of stdout went away (`flytomo check ... | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit would raise again
        return 141  # 128 + SIGPIPE, as a shell tool ends
    except OSError as err:
        if err.errno in NO_ROOM_ERRNOS and not err.filename:  # PIL, tifffile and zarr name no file
            print(f"flytomo: error: writing {_output_of(args)}: {err.strerror}; make room "
                  "and run the same command again", file=sys.stderr)
            return 2
        if err.errno not in _FILE_SYSTEM_ERRNOS or not err.filename:
            raise  # not a file the user named or the system refused: a bug, with its traceback
        print(f"flytomo: error: {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = show
        for line in once.summary():
            print(line, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
