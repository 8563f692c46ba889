"""The Table-1 bench runs end to end on a tiny size and its rows are ordered as physics says."""
import json

import numpy as np

from tests.bench import load_bench


def test_quality_table_rows_and_yardstick(tmp_path):
    quality = load_bench("quality")
    out = tmp_path / "q.json"
    quality.main(["--size", "64", "--per-family", "1", "--photons", "200", "--iterations", "30",
                  "--reference-blur", "0.5", "2", "--json", str(out)])
    rows = {r["method"]: r for r in json.loads(out.read_text())["results"]}
    assert list(rows) == ["truth blurred by a 0.5-px Gaussian", "truth blurred by a 2-px Gaussian",
                          "FBP", "MLEM", "modified MLEM"]
    assert rows["truth blurred by a 0.5-px Gaussian"]["psnr_mean"] > rows["truth blurred by a 2-px Gaussian"]["psnr_mean"] + 5
    assert rows["modified MLEM"]["psnr_mean"] > rows["FBP"]["psnr_mean"] + 3  # photon-starved: MLEM wins
    assert set(rows["FBP"]["psnr_by_family"]) == {"heterogeneous", "cracked", "network", "radial"}


def test_self_ensemble_maps_every_view_back():
    """An operation that commutes with rotations and flips is unchanged by the ensemble; one
    that does not (a shift) is averaged over the eight views."""
    from scipy.ndimage import gaussian_filter

    bench = load_bench("quality")
    vol = np.random.default_rng(0).random((2, 12, 12))
    smooth = lambda v: gaussian_filter(v, (0, 1.0, 1.0), mode="wrap")  # noqa: E731
    np.testing.assert_allclose(bench.self_ensemble(smooth, vol, 8), smooth(vol), atol=1e-12)
    shift = lambda v: np.roll(v, 1, axis=2)  # noqa: E731
    views = bench.self_ensemble(shift, vol, 4)
    expect = np.mean([np.roll(vol, s, axis=a) for a, s in ((2, 1), (1, -1), (2, -1), (1, 1))], axis=0)
    np.testing.assert_allclose(views, expect, atol=1e-12)
