"""The cost of marking finished scans ``done`` in the store's scan list (``flytomo.scans``).

Each mark rewrites the whole list; ``hpc.engine._ScanStatus`` writes the scans finished since
its last write together, waiting 20 times its last write's cost (at most 2 s). Here N scans
finish in one burst (the worst case: a resumed run whose units were all done but unmarked, or
many small scans), once with a write per scan (sessions <= 43) and once throttled.

    .venv/bin/python bench/scan_marking.py [--scans 300 1000] [--json bench/results/scan_marking.json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def _entry(t: int) -> dict:
    """A scan entry about the size of a real one (~1 KB in .zattrs)."""
    return {"index": t, "status": "pending", "file": f"/data/experiment/raw/scan_{t:04d}.h5", "scan_id": str(t),
            "geometry": {"center": 255.5, "n_angles": 360, "pad_columns": 0, "blur_angle_deg": 1.5,
                         "angles": "0..180"}, "fingerprint": "f" * 64, "start_time_s": 1.7e9 + 12.0 * t,
            "duration_s": 9.0, "temperature_C": 25.0 + 0.8 * t}


def measure(n: int, throttled: bool) -> dict:
    from hpc import engine
    from hpc import store as st
    from hpc.planner import WorkUnit

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.zarr"
        st.create_store(path, (n, 1, 4, 4), 1, {"scans": [_entry(t) for t in range(n)]})
        units = [WorkUnit(t, 0, 1) for t in range(n)]
        live = engine._ScanStatus(path, units, set())
        if not throttled:
            live.SHARE, live.MAX_WAIT_S = 0.0, 0.0
        t0 = time.perf_counter()
        for u in units:
            live.unit_done(u)
        live.flush()
        seconds = time.perf_counter() - t0
        assert all(s["status"] == "done" for s in st.read_attrs(path)["scans"])
        return {"scans": n, "throttled": throttled, "seconds": seconds, "writes": live.writes,
                "zattrs_kb": (path / ".zattrs").stat().st_size / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", type=int, nargs="+", default=[300, 1000])
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    rows = [measure(n, th) for n in a.scans for th in (False, True)]
    print("| scans | marking | writes | seconds | .zattrs KB |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scans']} | {'throttled (s44)' if r['throttled'] else 'a write per scan (<= s43)'} "
              f"| {r['writes']} | {r['seconds']:.2f} | {r['zattrs_kb']:.0f} |")
    if a.json:
        a.json.write_text(json.dumps({"command": "bench/scan_marking.py", "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
