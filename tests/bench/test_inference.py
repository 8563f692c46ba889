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


def test_method_rows_time_every_method_with_its_networks():
    """--method: one row per method, the rrdb method as shipped with its second network on
    slices that fit it (192 px) and without on smaller ones (48 px)."""
    import warnings

    from recon.weights import ModelDomainWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelDomainWarning)
        small = _bench().method_rows(48, 30, slices=2, repeat=1, device="cpu", batch=2)
    big = _bench().method_rows(192, 30, slices=1, repeat=1, device="cpu", batch=1)
    assert [r["networks"] for r in small] == [0, 0, 1, 1]
    assert [r["networks"] for r in big] == [0, 0, 1, 2]
    assert all(r["s_per_slice"] > 0 and r["slices_per_s"] == 1 / r["s_per_slice"] for r in small + big)
