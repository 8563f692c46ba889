"""``flytomo analyze STORE``: crack volume fraction of every scan in an experiment store."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from hpc.commands import TIMEZONE_HELP, exit_on_sigterm, timezone_flag
from recon.errors import FlytomoError


def _load_params(path: str):
    from pydantic import ValidationError

    from analysis.segment import SegmentationParams
    from recon.yamlfile import load_yaml, yaml_problem

    p = Path(path)
    if not p.is_file():
        raise FlytomoError(p, "no such segmentation parameter file")
    if p.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise FlytomoError(p, "--params takes a .json or .yaml file of segmentation parameters (as the "
                              "segmentation_params.json an analysis writes), not a "
                              f"{p.suffix or 'suffix-less'} file")
    try:
        text = p.read_text()
        data = (load_yaml(text) or {}) if p.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except Exception as err:
        raise FlytomoError(p, f"cannot parse the parameter file ({yaml_problem(err)})") from None
    if isinstance(data, dict) and "segmentation" in data and isinstance(data["segmentation"], dict):
        data = data["segmentation"]
    if not isinstance(data, dict):
        raise FlytomoError(p, "the parameter file must hold a mapping of SegmentationParams fields")
    try:
        return SegmentationParams(**data)
    except ValidationError as err:
        words = []
        for e in err.errors():
            key = ".".join(str(x) for x in e.get("loc", ())) or "?"
            words.append(f"key '{key}': " + ("unknown key" if e.get("type") == "extra_forbidden" else e.get("msg", "")))
        raise FlytomoError(p, "; ".join(words)) from None


def run(args: argparse.Namespace) -> int:
    from analysis.run import analyze_store, config_source, log_from_store
    from analysis.store import open_store
    from hpc.volumes import is_store, store_from_volumes, volume_files

    exit_on_sigterm("nothing of this analysis is kept; an earlier one in its folder stays whole; run the same "
                    "command again")
    if args.workers is not None and args.workers < 1:
        raise FlytomoError(None, f"--workers must be ≥ 1, got {args.workers}")
    zone = timezone_flag(args.timezone)
    params = _load_params(args.params) if args.params else None
    if not is_store(args.store):  # volumes made elsewhere: one file a scan, copied into a store
        logged = args.temperature is not None and args.temperature.strip().lower() != "none"
        if logged and args.scan_list is None:
            raise FlytomoError(args.store, "volume files carry no scan times, so a temperature log cannot be read "
                                           "at them: give their times with --scan-list, or analyse without -T "
                                           "(the table follows the scan order)")
        files = volume_files(args.store)
        if logged:  # a bad log said before the volumes are copied, not after (blind probe AD)
            from analysis.table import read_temperature_log

            read_temperature_log(args.temperature, zone, args.log_start)
        args.out = args.out or str(files[0].parent / "volumes_analysis")
        Path(args.out).mkdir(parents=True, exist_ok=True)
        store = Path(args.out) / "volumes.zarr"
        shape = store_from_volumes(args.store, files, store, args.scan_list, zone)
        args.store, n = store, shape[0]
        args.temperature = args.temperature if logged else "none"
        order = ("times and temperatures from " + str(args.scan_list)) if args.scan_list else \
            "no times: the table follows the scan order"
        print(f"read {n} volume(s) as scans 0..{n - 1} in file-name order ({order}) into {args.store} "
              f"(a float32 copy, {np.prod(shape) * 4 / 1e9:.2g} GB)")
    elif args.scan_list is not None:
        raise FlytomoError(args.scan_list, "--scan-list is for volume files; an experiment store records its scans' times")
    attrs = open_store(args.store).attrs
    if (note := config_source(attrs, args.store)) is not None:
        print(f"note: {note}")
    if args.temperature is not None and args.temperature.strip().lower() == "none":
        args.temperature = None  # the scans' own temperatures, or the scan order: not the config's log
    elif args.temperature is None and (log := log_from_store(attrs, args.store)) is not None:
        args.temperature = log
        print(f"temperature log: {log} (the experiment config's; --temperature to give another)")
    if args.workers and args.workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            out = analyze_store(args.store, args.temperature, args.out, params=params, executor=pool,
                                extrapolate=args.extrapolate or None, timezone=zone, log_start=args.log_start)
    else:
        out = analyze_store(args.store, args.temperature, args.out, params=params,
                            extrapolate=args.extrapolate or None, timezone=zone, log_start=args.log_start)
    t = out.table
    n_ok = int((t["status"] == "ok").sum())
    print(f"analysed {len(t)} scan(s) of {args.store}: {n_ok} ok"
          + (f", {len(t) - n_ok} not (see the status column)" if n_ok < len(t) else ""))
    if n_ok:
        cf = t.loc[t["status"] == "ok", "crack_fraction"] * 100
        print(f"crack volume fraction: {cf.min():.2f}% .. {cf.max():.2f}%")
    print(f"wrote {out.csv}")
    print(f"wrote {out.parquet}")
    print(f"wrote {out.csv.parent / 'segmentation_params.json'}")
    for p in out.plots.values():
        print(f"wrote {p}")
    if not n_ok:  # the files are written (the status column says why), but nothing was measured
        print(f"{args.store}: no scan could be analysed (see the status column)", file=sys.stderr)
        return 1
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="segment particle, cracks and pores in every scan; crack table and plots",
        description="Segment the particle, its cracks and its pores in every time point of an "
                    "experiment store, join the temperature log, and write crack_table.csv, "
                    "crack_table.parquet and PNG figures. Volumes reconstructed elsewhere are read too "
                    "(TIFF stacks, .npy, HDF5: one file a scan, without times).")
    p.add_argument("store", metavar="STORE", help="experiment store (OME-Zarr folder), or volumes made elsewhere: a "
                                                  "TIFF stack, .npy or HDF5 file, a folder or a quoted glob of them "
                                                  "(one file a scan, in file-name order; a folder of single-slice "
                                                  "TIFFs is one volume), copied into DIR/volumes.zarr")
    p.add_argument("--temperature", "-T", metavar="LOG.csv", default=None,
                   help="temperature log (CSV: time_s, temperature_C; also minutes, dates, K or F, ; and decimal commas; "
                        "'none': no log, even where the experiment config names one) "
                        "(default: the log the store's experiment config names, else the temperatures "
                        "recorded with the scans)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: <store folder>/<store name>_analysis; for volume files "
                        "<their folder>/volumes_analysis)")
    p.add_argument("--scan-list", metavar="LIST.csv", default=None,
                   help="volume files only: a CSV of each file's time and/or temperature (columns: file, and "
                        "time_s or a date-time, and/or temperature_C; names and units as the temperature log's; "
                        "duration_s where the time is the scan's start: the temperature is then read at "
                        "mid-scan), so a temperature log can be joined (-T) or the listed temperatures used")
    p.add_argument("--timezone", default=None, metavar="ZONE",
                   help=TIMEZONE_HELP + "; a store's experiment config may name it (timezone:)")
    p.add_argument("--log-start", default=None, metavar="DATETIME",
                   help="for a log that counts seconds from its own start (Elapsed (s)): the date-time it reads 0 "
                        "at ('2024-03-14 09:58:10', on --timezone's clock where it has no zone, or Unix seconds); "
                        "default: the experiment config's temperature_log_start where -T is its log")
    p.add_argument("--extrapolate", action="store_true",
                   help="accept scans outside the temperature log (hold its first/last reading); "
                        "default: the store config's analysis.extrapolate")
    p.add_argument("--params", metavar="FILE", default=None,
                   help="segmentation parameters (YAML or JSON, SegmentationParams fields; "
                        "default: the store's config, else built-in defaults)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="time points analysed in parallel by N local processes (default 1)")
    p.set_defaults(func=run)
