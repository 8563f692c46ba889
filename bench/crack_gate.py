"""Crack fractions through a network: the heating-experiment gate, model against model.

A synthetic heating experiment (``flytomo simulate-experiment DIR --size 64 --scans 24``,
made here when DIR has none; crack volume fractions 0–4.8 % known per scan) is run through
``flytomo run`` once per entry — ``method: rrdb`` with ``rrdb: {model: PATH}`` for a model
file (``default`` = the shipped model), or a method name (``mlem-flyscan``, ``fbp``) — each
into its own store and analysis folder (made afresh every time: a store left by another
model under the same label is discarded), with the default analysis (partial-volume
estimate). Prints, per entry, the crack fraction's MAE, bias (mean signed error) and worst
error against the truth in percentage points, and its correlation; writes JSON.

The CI test ``tests/hpc/test_shipped_model_cracks.py`` is the 6-scan version of this gate
(MAE < 0.5 points); this 24-scan run is the one docs/benchmarks.md quotes.

    .venv/bin/python bench/crack_gate.py /tmp/acc default runs/X/model.safetensors mlem-flyscan
        [--self-ensemble] [--remove-stripes mean|sorting|all] [--json runs/crack_gate.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analysis_accuracy import compare, read_truth  # noqa: E402 - a sibling bench script
from hpc.cli import main as flytomo  # noqa: E402
from recon.io.preprocess import STRIPE_METHODS  # noqa: E402
from recon.methods import METHODS  # noqa: E402


def _label(entry: str, self_ensemble: bool = False, stripes: str | None = None) -> str:
    suffix = f"-stripes-{stripes}" if stripes else ""
    if entry in METHODS:
        return entry + suffix
    name = "default" if entry == "default" else Path(entry).parent.name or Path(entry).stem
    return (f"{name}-self-ensemble" if self_ensemble else name) + suffix


def run_entry(exp: Path, entry: str, self_ensemble: bool = False, stripes: str | None = None) -> pd.DataFrame:
    """Reconstruct and analyse the experiment for one entry (a network one averaged over the 8
    rotations/flips with ``self_ensemble``; ring removal ``stripes``, a
    ``reconstruction.remove_stripes`` method); its crack table (one row per scan)."""
    base = yaml.safe_load((exp / "experiment.yaml").read_text())
    label = _label(entry, self_ensemble, stripes)
    cfg = dict(base)
    rec = dict(base["reconstruction"], remove_stripes=stripes)
    if entry in METHODS:
        rec["method"] = entry
    else:
        rec["method"] = "rrdb"
        rec["rrdb"] = {**(rec.get("rrdb") or {}), "model": None if entry == "default" else str(Path(entry).resolve()),
                      "self_ensemble": self_ensemble}
    cfg["reconstruction"] = rec
    cfg["output"] = f"recon/gate-{label}.zarr"
    cfg["analysis"] = {**base["analysis"], "out": f"analysis-{label}"}
    path = exp / f"gate-{label}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    rc = flytomo(["run", str(path), "--no-progress", "--restart"])  # never a store of another model
    if rc != 0:
        raise SystemExit(f"{path}: flytomo run failed (exit {rc})")
    return pd.read_csv(exp / f"analysis-{label}" / "crack_table.csv")


def score(table: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Errors of the crack volume fraction against the truth, percentage points
    (``analysis_accuracy.compare``, the one comparison)."""
    stats = compare(table, truth)[1]
    return {"scans": stats["scans"], "mae": stats["mae_pp"], "bias": stats["bias_pp"],
            "max": stats["max_err_pp"], "r": stats["corr"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path, help="experiment folder (made here if it has no experiment.yaml)")
    ap.add_argument("entries", nargs="+", help="model files, 'default', or method names")
    ap.add_argument("--scans", type=int, default=24)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--self-ensemble", action="store_true", help="network entries averaged over 8 rotations/flips")
    ap.add_argument("--remove-stripes", choices=STRIPE_METHODS, help="ring removal for every entry")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not (args.dir / "experiment.yaml").is_file():
        rc = flytomo(["simulate-experiment", str(args.dir), "--size", str(args.size),
                      "--scans", str(args.scans), "--method", "rrdb", "--quiet"])
        if rc != 0:
            return rc
    truth = read_truth(args.dir)
    results = []
    print(f"{'entry':>28} {'scans':>5} {'MAE':>6} {'bias':>7} {'max':>6} {'r':>6} {'s':>6}")
    for entry in args.entries:
        t0 = time.perf_counter()
        row = {"entry": entry, "self_ensemble": args.self_ensemble and entry not in METHODS,
               "remove_stripes": args.remove_stripes,
               **score(run_entry(args.dir, entry, args.self_ensemble, args.remove_stripes), truth),
               "wall_s": time.perf_counter() - t0}
        results.append(row)
        print(f"{_label(entry, args.self_ensemble, args.remove_stripes):>28} {row['scans']:>5} {row['mae']:6.3f} {row['bias']:+7.3f} "
              f"{row['max']:6.3f} {row['r']:6.3f} {row['wall_s']:6.0f}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"dir": str(args.dir), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
