"""Generalisation to a structure never seen in training: one phantom family held out.

Trains the shipped model's configuration (``--config``, default jobs/train-mlem.yaml) on the
pairs of that run's own data cache with every pair of one family (``--family``) removed, for
``--steps`` steps (the same patches-per-step, learning rate and schedule shape), then scores
on the Table-1 test images (512², 120 projections, 1.5°, I0 2000, 5 per family): the input
(modified MLEM), the full model and the held-out model, per family. A model that learned
the physics of the blur and noise, not the look of the training structures, gains about as
much on the family it never saw as on the others.

    .venv/bin/python bench/rrdb_heldout.py [--family network] [--steps 2000]
        [--full recon/weights/rrdb-mlem-flyscan.safetensors] [--json bench/results/heldout.json]

Needs the full run's training data in its run folder (``flytomo train --config ...`` makes
it; the held-out run reuses it, nothing is simulated again). Resumable: the held-out run
checkpoints in ``runs/rrdb-heldout-FAMILY`` and a rerun continues.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from recon.errors import FlytomoError  # noqa: E402
from recon.phantoms import FAMILIES  # noqa: E402
from recon.train import _data_key, build_pair_set, load_config, train  # noqa: E402
from benchio import save_json  # noqa: E402 - a sibling bench module


class Subset:
    """Pair source over the pairs of a cached :class:`recon.train.PairSet` not of ``family``."""

    def __init__(self, pairs, family: str) -> None:
        self.pairs = pairs
        self.index = [i for i, p in enumerate(pairs.params) if p.get("family") != family]
        if not self.index:
            raise FlytomoError(pairs.folder, f"no pairs left without family {family!r}")

    def __len__(self) -> int:
        return len(self.index)

    def __call__(self, i: int):
        j = self.index[i]
        return np.asarray(self.pairs.inputs[j]), np.asarray(self.pairs.truths[j]), self.pairs.params[j]


def cached(cfg, run_dir: Path, split: str, n: int):
    folder = run_dir / "data" / split

    def missing(i):
        raise FlytomoError(folder, f"no complete {split} data cache of the full run here; run "
                           "`flytomo train --config ...` for it first")
    return build_pair_set(missing, n, folder, _data_key(cfg, split))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "jobs" / "train-mlem.yaml")
    ap.add_argument("--family", default="network", choices=FAMILIES)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--full", default=str(ROOT / "recon" / "weights" / "rrdb-mlem-flyscan.safetensors"))
    ap.add_argument("--per-family", type=int, default=5)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads for training")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    cfg, full_run = load_config(args.config)
    train_src = Subset(cached(cfg, full_run, "train", cfg.data.n_train), args.family)
    val_src = Subset(cached(cfg, full_run, "validation", cfg.data.n_validation), args.family)
    name = f"rrdb-heldout-{args.family}"
    families = [f for f in cfg.data.families if f != args.family]
    held = cfg.model_copy(update={
        "name": name,
        "data": cfg.data.model_copy(update={"families": families, "n_train": len(train_src),
                                            "n_validation": len(val_src)}),
        "training": cfg.training.model_copy(update={"steps": args.steps}),
        "threads": args.threads,
    })
    run_dir = ROOT / "runs" / name
    t0 = time.perf_counter()
    result = train(held, run_dir, sources=(train_src, val_src), progress=False)
    if result.status != "finished":
        sys.exit(f"held-out run stopped at step {result.step}; run again to resume")
    print(f"held-out run: {len(train_src)} pairs without {args.family!r}, {result.step} steps, "
          f"{result.wall_time_s:.0f} s (this call {time.perf_counter() - t0:.0f} s)")

    if not Path(args.full).is_file():
        sys.exit(f"{args.full}: the full model is not there yet; run again once it is")
    from quality import family_means, images, scores, simulate

    from recon.geometry import ScanGeometry
    from recon.methods import make_reconstructor

    imgs = images(args.size, args.per_family, validation=False)
    truth = np.stack([im for _, im in imgs])
    angles = np.arange(120) * 1.5
    g = ScanGeometry.create(angles, args.size, blur_angle_deg=1.5)
    sino = simulate(truth, g, [2000.0], seed=1, n_sub=16)[2000.0]
    first = make_reconstructor(g, "mlem-flyscan")(sino)
    rows = {"modified MLEM (input)": first}
    from recon.weights import load_model

    for label, spec in (("full model", args.full), (f"held out {args.family}", result.weights)):
        rows[label] = load_model(spec, input_kind="mlem-flyscan").apply(first)
    out = {"family_held_out": args.family, "steps": result.step, "pairs": len(train_src), "rows": []}
    print(f"{'':>24}" + "".join(f"{f:>15}" for f in FAMILIES) + f"{'all':>15}")
    for label, vol in rows.items():
        p, s = scores(vol, truth)
        fp, fs = family_means(p, imgs), family_means(s, imgs)
        fam = {f: (fp[f], fs[f]) for f in FAMILIES}
        print(f"{label:>24}" + "".join(f"{fam[f][0]:>8.2f}/{fam[f][1]:.3f}" for f in FAMILIES)
              + f"{np.mean(p):>8.2f}/{np.mean(s):.3f}")
        out["rows"].append({"method": label, "psnr_mean": float(np.mean(p)), "ssim_mean": float(np.mean(s)),
                            "by_family": {f: {"psnr": v[0], "ssim": v[1]} for f, v in fam.items()}})
    save_json(args.json, out, indent=1)


if __name__ == "__main__":
    main()
