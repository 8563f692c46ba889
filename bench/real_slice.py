"""The real beamline slice through both networks: input FBP, ours, the seed authors' model.

Reads ``../shared/data/seed-model/img_test.tiff`` (an 800×800 FBP slice of a cathode particle,
attenuation per pixel) and writes a side-by-side PNG.

    .venv/bin/python bench/real_slice.py [--ours PATH.safetensors] [--out docs/real_slice.png]

``--ours`` defaults to the network ``flytomo enhance --input-kind fbp`` picks for an 800² slice
(recon.weights.default_model_spec: rrdb-fbp-blend since session 23).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import tifffile
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from recon.weights import default_model_spec, load_model, seed_checkpoint_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ours", default=None, help="our model (default: the shipped one)")
    ap.add_argument("--out", default="docs/real_slice.png")
    args = ap.parse_args()
    seed_path = seed_checkpoint_path()
    img = tifffile.imread(seed_path.with_name("img_test.tiff")).astype(np.float32)
    panels = [("input: FBP of a real fly-scan", img)]
    ours = args.ours or default_model_spec("fbp", min(img.shape))
    for label, spec in (("flytomo RRDB", ours), ("seed authors' RRDB", f"seed:{seed_path}")):
        loaded = load_model(spec, input_kind="fbp")
        t = time.perf_counter()
        out = loaded.apply(img[None])[0]
        print(f"{label}: {time.perf_counter() - t:.1f} s for one 800² slice")
        panels.append((label, out))
    lo, hi = np.percentile(img, [1, 99.5])
    fig = Figure(figsize=(15, 5.4), dpi=110)
    FigureCanvasAgg(fig)
    for i, (label, a) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.imshow(a, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(label)
        ax.set_axis_off()
    fig.suptitle("img_test.tiff (FXI beamline, cathode particle): no ground truth; same grey scale")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
