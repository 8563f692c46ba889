"""``flytomo init 'SCANS_GLOB' --temperature LOG.csv --out DIR``: write DIR/experiment.yaml.

The config has runnable defaults for every section (method mlem-flyscan, local executor,
analysis on) and paths relative to DIR, so the folder can be moved whole. Check it with
``flytomo check DIR/experiment.yaml``, run it with ``flytomo run DIR/experiment.yaml``.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
from pathlib import Path

from hpc.commands import TIMEZONE_HELP, first_line, timezone_flag
from recon.errors import FlytomoError


def _relative(p: str, base: Path) -> str:
    """``p`` (a path or glob, relative to the current folder) relative to ``base`` when possible.
    A glob's folders written escaped (``bt [[]42]`` for ``bt [42]``) are compared as the folders
    they name, and escaped again (a copy of the experiment folder must not read the first's scans)."""
    absolute = Path(p).expanduser()
    absolute = absolute if absolute.is_absolute() else Path.cwd() / absolute
    parts = absolute.parts
    k = next((i for i, part in enumerate(parts) if not _literal(part)), len(parts))
    head = Path(*[_unescape(part) for part in parts[:k]])
    try:
        rel = os.path.relpath(head, base.resolve())
    except ValueError:  # another drive
        return str(absolute)
    if k == len(parts):
        return rel
    return str(Path(glob.escape(rel), *parts[k:]))


def _unescape(part: str) -> str:
    return re.sub(r"\[([\[\]*?])\]", r"\1", part)


def _literal(part: str) -> bool:
    """A path part with no wildcard, or only escaped ones."""
    return not glob.has_magic(part) or glob.escape(_unescape(part)) == part


def run(args: argparse.Namespace) -> int:
    from hpc.config import CONFIG_NAME, check_config, default_config, dump_config, resolve_scans

    zone = timezone_flag(args.timezone)  # before anything is made
    files, missing = resolve_scans(args.scans, Path.cwd())
    if not files:  # nothing to write a config for
        raise FlytomoError(None, missing[0].message if missing else f"{args.scans!r} names no scan files")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FlytomoError(out, "exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    path = out / CONFIG_NAME
    if path.exists() and not args.force:
        raise FlytomoError(path, "exists already; pass --force to replace it")
    scans = _relative(args.scans, out)
    log = _relative(args.temperature, out) if args.temperature else None
    cfg = default_config(scans, log, output=args.output, method=args.method)
    cfg["rows_per_chunk"] = args.rows_per_chunk
    cfg["scan_duration_s"] = args.scan_duration
    if args.scan_list is not None:
        cfg["scan_list"] = _relative(args.scan_list, out)
    if zone is not None:
        cfg["timezone"] = zone
    if args.log_start is not None:
        cfg["temperature_log_start"] = args.log_start
    cfg["executor"]["kind"] = args.executor
    dump_config(cfg, path, header=(
        "# flytomo experiment config (flytomo init). Paths are relative to this file's folder.\n"
        "# Check: flytomo check experiment.yaml   Run: flytomo run experiment.yaml"))
    print(f"wrote {path}")
    _, problems = check_config(path)
    for p in problems:
        print(f"  {'warning' if p.warning else 'problem'}: {p}")
    if any(not p.warning for p in problems):  # written to be edited; not runnable as it is
        print(f"fix the problems above, then: flytomo check {path}")
        return 2
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("init", help="write an experiment config for a set of scans",
                              description=first_line(__doc__))
    p.add_argument("scans", help="scan files: a glob in quotes ('raw/scan_*.h5')")
    p.add_argument("--temperature", "-T", default=None, metavar="LOG.csv",
                   help="temperature log (CSV: time_s, temperature_C; or time / timestamp and temperature / T columns, units in brackets)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="experiment folder for experiment.yaml")
    p.add_argument("--output", default="recon/experiment.zarr", help="store path, relative to DIR")
    p.add_argument("--method", default="mlem-flyscan", choices=("fbp", "mlem", "mlem-flyscan", "rrdb"),
                   help="reconstruction method written into the config")
    p.add_argument("--scan-list", default=None, metavar="LIST.csv",
                   help="each scan's start time where its file records none (CSV: file, time_s or a date-time, "
                        "optional duration_s; temperature_C where no log is given), over what the files record")
    p.add_argument("--scan-duration", type=float, default=None, metavar="S",
                   help="seconds per scan, over what the files record (default: theirs, else start spacing)")
    p.add_argument("--timezone", default=None, metavar="ZONE", help=TIMEZONE_HELP)
    p.add_argument("--log-start", default=None, metavar="DATETIME",
                   help="for a log that counts seconds from its own start (Elapsed (s)): the date-time it reads 0 "
                        "at ('2024-03-14 09:58:10', on --timezone's clock where it has no zone, or Unix seconds)")
    p.add_argument("--rows-per-chunk", "--chunk-rows", type=int, default=16, metavar="N",
                   help="detector rows per work unit (the store's chunk height)")
    p.add_argument("--executor", default="local", choices=("local", "dask", "mpi"),
                   help="engine written into the config (flytomo run --executor overrides it)")
    p.add_argument("--force", action="store_true", help="replace an existing experiment.yaml")
    p.set_defaults(func=run)
