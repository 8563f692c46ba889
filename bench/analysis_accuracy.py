"""Benchmark: how well does the crack analysis recover the true crack fraction, per method?

Input: an experiment folder made by ``flytomo simulate-experiment DIR``:
``DIR/truth/crack_fraction.csv`` (columns ``scan_index``, ``crack_fraction``: the ground
truth of the synthetic heating run) and one reconstructed experiment store (``*.zarr``) per
method anywhere under DIR. Every store is analysed (``analysis.run.analyze_store``) and its
crack fractions are compared with the truth, scan by scan.

Both crack-volume estimators are compared by default (``--estimators``): ``threshold``
(voxels below the defect threshold) and ``[pv]`` = ``partial_volume`` (the missing
attenuation around each crack).
Prints a table — per method and estimator: scans compared, MAE, bias (mean signed error) and max error of
the crack volume fraction, in percentage points — writes it as JSON, and saves a plot of
crack fraction against scan index (truth and every method) with the errors below it.

    .venv/bin/python bench/analysis_accuracy.py DIR [--out OUT] [--params FILE] [--workers N] [--reuse]
                                                [--estimators threshold,partial_volume]

The ground-truth volumes themselves (``DIR/truth/volumes.npz``, key ``volume``, or a store of
method ``truth`` / under ``DIR/truth/``), when the folder has them, are segmented too and
listed as ``truth volumes``: their error is the segmentation's own. The temperature log is
taken from ``DIR/raw/temperature.csv`` (or ``DIR/temperature.csv``) when present.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from recon.errors import FlytomoError  # noqa: E402


#: crack volume estimators the benchmark can compare: SegmentationParams overrides
ESTIMATORS = {
    "threshold": {"crack_volume": "threshold"},
    "partial_volume": {"crack_volume": "partial_volume"},
}
SHORT = {"partial_volume": "pv"}


def read_truth(exp_dir: Path) -> pd.DataFrame:
    path = exp_dir / "truth" / "crack_fraction.csv"
    if not path.is_file():
        raise FlytomoError(path, "no ground truth here; is this a folder made by flytomo simulate-experiment?")
    df = pd.read_csv(path)
    missing = {"scan_index", "crack_fraction"} - set(df.columns)
    if missing:
        raise FlytomoError(path, f"lacks column(s) {', '.join(sorted(missing))}")
    return df[["scan_index", "crack_fraction"]].astype({"scan_index": int, "crack_fraction": float})


def find_stores(exp_dir: Path) -> dict[str, Path]:
    """method name → store path, for every ``*.zarr`` group under exp_dir (not nested)."""
    import zarr

    found: dict[str, Path] = {}
    for p in sorted(exp_dir.rglob("*.zarr")):
        if not p.is_dir() or any(q.suffix == ".zarr" for q in p.relative_to(exp_dir).parents if q.name):
            continue
        try:
            attrs = dict(zarr.open_group(str(p), mode="r").attrs.get("flytomo") or {})
        except Exception:
            continue
        name = str(attrs.get("method") or p.name[:-5])
        model = attrs.get("model")
        if name == "rrdb" and isinstance(model, dict) and model.get("input_kind"):
            name = f"rrdb on {model['input_kind']}"  # which first stage the network corrected
        if name == "truth" or p.parent == exp_dir / "truth":
            name = "truth volumes"  # the ground-truth volumes, segmented: the analysis' own error
        if name in found:  # two stores of one method: tell them apart by their folder
            name = str(p.relative_to(exp_dir).with_suffix(""))
        found[name] = p
    return found


def truth_volume_table(exp_dir: Path, params) -> pd.DataFrame | None:
    """Segment the ground-truth volumes (``DIR/truth/volumes.npz``, key ``volume`` (t, z, y, x)),
    when the folder has them: the analysis' own error, without any reconstruction."""
    from analysis.segment import segment_volume

    path = exp_dir / "truth" / "volumes.npz"
    if not path.is_file():
        return None
    with np.load(path) as data:
        if "volume" not in data.files:
            return None
        vols = data["volume"]
    rows = []
    for t in range(vols.shape[0]):
        r = segment_volume(vols[t], params)
        rows.append({"scan_index": t, "crack_fraction": r.crack_fraction, "status": r.status})
    return pd.DataFrame(rows)


def find_log(exp_dir: Path) -> Path | None:
    for cand in (exp_dir / "temperature.csv", exp_dir / "raw" / "temperature.csv",
                 exp_dir / "truth" / "temperature.csv"):
        if cand.is_file():
            return cand
    return None


def compare(table: pd.DataFrame, truth: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    m = truth.merge(table[["scan_index", "crack_fraction", "status"]], on="scan_index", how="left",
                    suffixes=("_true", ""))
    ok = (m["status"] == "ok") & np.isfinite(m["crack_fraction"]) & np.isfinite(m["crack_fraction_true"])
    err = (m["crack_fraction"] - m["crack_fraction_true"])[ok] * 100
    stats = {
        "scans": int(ok.sum()),
        "not_ok": int((~ok).sum()),
        "mae_pp": float(err.abs().mean()) if len(err) else float("nan"),
        "bias_pp": float(err.mean()) if len(err) else float("nan"),
        "max_err_pp": float(err.abs().max()) if len(err) else float("nan"),
        "corr": float(np.corrcoef(m["crack_fraction"][ok], m["crack_fraction_true"][ok])[0, 1])
        if ok.sum() > 2 and m["crack_fraction_true"][ok].std() > 0 else float("nan"),
    }
    return m, stats


def plot(results: dict[str, pd.DataFrame], truth: pd.DataFrame, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 6.2))
    FigureCanvasAgg(fig)
    ax, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax.plot(truth["scan_index"], truth["crack_fraction"] * 100, "k-", lw=2.2, label="ground truth")
    colors: dict[str, str] = {}
    styles = {"": "o-", "[pv]": "s--"}
    for name, m in results.items():
        base, _, tag = name.partition(" [")
        tag = f"[{tag}" if tag else ""
        color = colors.setdefault(base, f"C{len(colors)}")
        style = styles.get(tag, "o-")
        ok = m["status"] == "ok"
        ax.plot(m["scan_index"][ok], m["crack_fraction"][ok] * 100, style, ms=3, lw=1, color=color, label=name)
        ax2.plot(m["scan_index"][ok], (m["crack_fraction"] - m["crack_fraction_true"])[ok] * 100, style, ms=3,
                 lw=1, color=color)
    ax.set_ylabel("crack volume fraction (%)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Crack fraction recovered from each reconstruction method")
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_xlabel("scan index")
    ax2.set_ylabel("error (percentage points)")
    ax2.grid(alpha=0.3)
    fig.savefig(path, dpi=130, bbox_inches="tight")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exp_dir", metavar="DIR", type=Path, help="folder made by flytomo simulate-experiment")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default DIR/bench/analysis_accuracy)")
    ap.add_argument("--params", default=None, help="segmentation parameters (YAML/JSON)")
    ap.add_argument("--workers", type=int, default=1, help="local processes per store")
    ap.add_argument("--reuse", action="store_true", help="reuse crack tables already in OUT/<method>/<mode>/")
    ap.add_argument("--estimators", default="threshold,partial_volume",
                    help="comma-separated crack volume estimators to compare (SegmentationParams."
                         "crack_volume): threshold, partial_volume")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except FlytomoError as err:
        print(f"analysis_accuracy: error: {err}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from analysis.run import analyze_store

    modes = [m.strip() for m in args.estimators.split(",") if m.strip()]
    bad = [m for m in modes if m not in ESTIMATORS]
    if bad or not modes:
        raise FlytomoError("--estimators", f"unknown estimator(s) {', '.join(bad) or '(none)'}; "
                           f"choose from {', '.join(ESTIMATORS)}")
    exp = args.exp_dir
    truth = read_truth(exp)
    stores = find_stores(exp)
    if not stores and not (exp / "truth" / "volumes.npz").is_file():
        raise FlytomoError(exp, "no reconstructed store (*.zarr) found")
    out = args.out or exp / "bench" / "analysis_accuracy"
    out.mkdir(parents=True, exist_ok=True)
    from analysis.segment import SegmentationParams

    base = SegmentationParams()
    if args.params:
        from hpc.commands.analyze import _load_params

        base = _load_params(args.params)
    log = find_log(exp)

    per_method: dict[str, pd.DataFrame] = {}
    stats: dict[str, dict] = {}
    paths: dict[str, Path] = {}
    for name, store in stores.items():
        for mode in modes:
            params = base.model_copy(update=ESTIMATORS[mode])
            label = name if mode == "threshold" else f"{name} [{SHORT[mode]}]"
            odir = out / name.replace("/", "_") / mode
            csv = odir / "crack_table.csv"
            if args.reuse and csv.is_file():
                table = pd.read_csv(csv)
            elif args.workers > 1:
                from concurrent.futures import ProcessPoolExecutor

                with ProcessPoolExecutor(args.workers) as pool:
                    table = analyze_store(store, log, odir, params=params, executor=pool, extrapolate=True).table
            else:
                table = analyze_store(store, log, odir, params=params, extrapolate=True).table
            per_method[label], stats[label] = compare(table, truth)
            paths[label] = store
    if "truth volumes" not in stores:
        for mode in modes:
            table = truth_volume_table(exp, base.model_copy(update=ESTIMATORS[mode]))
            if table is None:
                break
            label = "truth volumes" if mode == "threshold" else f"truth volumes [{SHORT[mode]}]"
            per_method[label], stats[label] = compare(table, truth)
            paths[label] = exp / "truth" / "volumes.npz"

    rows = sorted(stats.items(), key=lambda kv: (np.nan_to_num(kv[1]["mae_pp"], nan=np.inf)))
    print(f"crack volume fraction vs truth ({exp / 'truth' / 'crack_fraction.csv'}), percentage points")
    print(f"{'method':<24} {'scans':>5} {'MAE':>7} {'bias':>7} {'max':>7} {'corr':>6}")
    for name, s in rows:
        print(f"{name:<24} {s['scans']:>5d} {s['mae_pp']:>7.3f} {s['bias_pp']:>+7.3f} {s['max_err_pp']:>7.3f} "
              f"{s['corr']:>6.3f}" + (f"   ({s['not_ok']} scan(s) not ok)" if s["not_ok"] else ""))
    payload = {"experiment": str(exp), "truth_mean_crack_fraction": float(truth["crack_fraction"].mean()),
               "methods": {k: {**v, "store": str(paths[k])} for k, v in stats.items()}}
    (out / "analysis_accuracy.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(per_method, truth, out / "analysis_accuracy.png")
    print(json.dumps(payload))
    print(f"wrote {out / 'analysis_accuracy.json'} and {out / 'analysis_accuracy.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
