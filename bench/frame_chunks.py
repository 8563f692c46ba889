"""Reading rows of a scan whose frames are compressed whole, as detectors write them.

A Data Exchange file of ``--angles`` uint16 frames of ``--size``² (Poisson counts around
3000), each frame one gzip chunk (level 4): every read of a few rows decompresses whole
frames. Reads all rows in chunks of ``--rows`` (the experiment default, 16) through
``open_scan(path).read``, as a reconstruction does, once reading only the rows asked for
(``FLYTOMO_READ_BAND_MB=0``) and once with the default band (512 MiB kept); the time of one
whole read of the file is the floor. The values read are checked equal.

    .venv/bin/python bench/frame_chunks.py [--angles 721 --size 512 --rows 16] [--json bench/results/frame_chunks.json]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from recon.io import open_scan
from benchio import save_json


def _write(path: Path, n_angles: int, size: int) -> None:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        g = f.create_group("exchange")
        d = g.create_dataset("data", (n_angles, size, size), np.uint16, chunks=(1, size, size),
                             compression="gzip", compression_opts=4)
        for i in range(n_angles):
            d[i] = rng.poisson(3000, (size, size))
        for name, level in (("data_white", 3500), ("data_dark", 100)):
            g.create_dataset(name, data=rng.poisson(level, (10, size, size)).astype(np.uint16),
                             chunks=(1, size, size), compression="gzip", compression_opts=4)
        g["theta"] = np.linspace(0.0, 180.0, n_angles, endpoint=False)


def _read_all(path: Path, rows: int, band_mb: str) -> tuple[float, int]:
    os.environ["FLYTOMO_READ_BAND_MB"] = band_mb
    scan = open_scan(path)
    n = scan.shape[1]
    t0 = time.perf_counter()
    check = 0
    for z in range(0, n, rows):
        check ^= hash(scan.read(z, min(n, z + rows)).tomo.tobytes())
    return time.perf_counter() - t0, check


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--angles", type=int, default=721)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frames.h5"
        _write(path, args.angles, args.size)
        t0 = time.perf_counter()
        with h5py.File(path, "r") as f:
            f["exchange/data"][...]
        whole = time.perf_counter() - t0
        rows_only, a = _read_all(path, args.rows, "0")
        banded, b = _read_all(path, args.rows, "512")
    raw_mb = args.angles * args.size * args.size * 2 / 2**20
    result = {"angles": args.angles, "size": args.size, "rows_per_read": args.rows, "raw_MiB": raw_mb,
              "whole_read_s": whole, "rows_only_s": rows_only, "band_512MiB_s": banded, "equal": a == b}
    print(f"{args.angles} frames of {args.size}² ({raw_mb:.0f} MiB raw), rows in chunks of {args.rows}: "
          f"one whole read {whole:.2f} s; rows only {rows_only:.2f} s; 512 MiB band {banded:.2f} s "
          f"({rows_only / banded:.1f}× faster); same values: {a == b}")
    save_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
