"""Material at a slice's edge: the shipped FBP network on crops of a slice (mirrored outward, recon.infer.EDGE_PAD) against the whole slice, and on a constant slice. Prints RMSE in the crop's outer 24 px and inside (docs/benchmarks.md)."""
import numpy as np, warnings, torch
warnings.simplefilter("ignore")
from recon.geometry import ScanGeometry
from recon.methods import reconstruct
from recon.phantoms import make_phantom
from recon.simulate import line_integrals_from_counts, simulate_flyscan
from recon.weights import load_model
from recon.infer import material_at_edges
m = load_model(None, input_kind="fbp")
img = np.full((128, 128), 0.01, np.float32)
o = m.apply(img[None])[0]; print("constant: max dev %.4f" % np.abs(o / 0.01 - 1).max())
for seed in range(3):
    truth = make_phantom("heterogeneous", 384, seed=seed)
    angles = np.arange(180) * 1.0
    li = line_integrals_from_counts(simulate_flyscan(truth[None], angles, 1.5, 3000, seed=seed))
    fbp = reconstruct(li, ScanGeometry.create(angles, 384, blur_angle_deg=1.5), "fbp")[0]
    print("full image flagged:", bool(material_at_edges(torch.from_numpy(fbp)[None])[0]))
    c = slice(96, 288)
    crop, tcrop = fbp[c, c], truth[c, c]
    band = np.ones((192, 192), bool); band[24:-24, 24:-24] = False
    o = m.apply(crop[None])[0]
    print(seed, "crop flagged", bool(material_at_edges(torch.from_numpy(crop)[None])[0]), "band rmse %.5f interior %.5f" % (np.sqrt(np.mean((o[band]-tcrop[band])**2)), np.sqrt(np.mean((o[~band]-tcrop[~band])**2))))
