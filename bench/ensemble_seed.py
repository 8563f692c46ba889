"""Averaging the shipped network's output with the seed's released network's (a measurement).

The Table-1 protocol (512², 120 projections over 180°, 1.5° blur, I0 2000): the shipped
model on modified MLEM, the shipped FBP model and the seed's network on FBP, and weighted
means of their outputs; the weight chosen on 8 validation images, then the 20 test images.

    .venv/bin/python bench/ensemble_seed.py   (~5 min)
"""
import sys, time, numpy as np, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from quality import images, simulate
from recon.geometry import ScanGeometry
from recon.methods import make_reconstructor
from recon.metrics import psnr, ssim
from recon.weights import load_model
torch.set_num_threads(2)
ours = load_model("recon/weights/rrdb-mlem-flyscan.safetensors")
fbpm = load_model("recon/weights/rrdb-fbp.safetensors")
seed = load_model("seed:../shared/data/seed-model/pre_trained_model.pth")
for split, val in (("validation", True), ("test", False)):
    t0 = time.time()
    imgs = images(512, 2 if val else 5, val)
    truth = np.stack([im for _, im in imgs])
    g = ScanGeometry.create(np.arange(120) * 1.5, 512, blur_angle_deg=1.5)
    sino = simulate(truth, g, [2000.0], seed=1, n_sub=16)[2000.0]
    f = make_reconstructor(g, "fbp")(sino); m = make_reconstructor(g, "mlem-flyscan")(sino)
    outs = {"ours": ours.apply(m), "fbp-model": fbpm.apply(f), "seed": seed.apply(f), "mlem": m}
    def sc(v): return np.mean([psnr(a, b) for a, b in zip(v, truth)]), np.mean([ssim(a, b) for a, b in zip(v, truth)])
    for k, v in outs.items(): print(split, k, "%.2f %.3f" % sc(v), flush=True)
    for w in (0.5, 0.6, 0.7, 0.8):
        print(split, f"{w} ours + {1-w:.1f} fbp-model", "%.2f %.3f" % sc(w * outs["ours"] + (1 - w) * outs["fbp-model"]))
        print(split, f"{w} ours + {1-w:.1f} seed", "%.2f %.3f" % sc(w * outs["ours"] + (1 - w) * outs["seed"]))
    print(split, "thirds", "%.2f %.3f" % sc((outs["ours"] + outs["fbp-model"] + outs["seed"]) / 3))
    print(split, "time", time.time() - t0, flush=True)
