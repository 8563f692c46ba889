"""The inference benchmark counts the multiply-adds a forward pass really runs."""
from recon.rrdb import build_model

from tests.bench import load_bench


def _bench():
    return load_bench("inference")


def test_macs_per_pixel_counts_the_convs_the_forward_runs():
    model = build_model({"architecture": "rrdb", "nf": 8, "nb": 2, "gc": 4, "dense_convs": 3})
    # every conv is 3×3, stride 1, same size: one weight = one multiply-add per output pixel
    weights = sum(m.weight.numel() for m in model.modules() if hasattr(m, "weight") and m.weight.dim() == 4)
    assert _bench().macs_per_pixel(model) == weights
    # the seed layout carries two convs its forward never runs: they are not counted
    seed = build_model({"architecture": "rrdb", "nf": 16, "nb": 4, "gc": 32, "dense_convs": 3,
                        "unused_first_convs": True})
    unused = 2 * (1 * 8 * 9)
    seed_weights = sum(m.weight.numel() for m in seed.modules() if hasattr(m, "weight") and m.weight.dim() == 4)
    assert _bench().macs_per_pixel(seed) == seed_weights - unused == 364_320
