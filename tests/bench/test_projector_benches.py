"""The projector benches run small: stored, traced, rebuilt and sampled agree; the fly-scan gain table fills."""
import numpy as np
import torch

from tests.bench import load_bench


def test_large_projector_ways_agree_on_a_small_case():
    one_case = load_bench("large_projector").one_case
    row = one_case(24, 10, 2, torch.device("cpu"), 1e9, ["stored", "traced", "rebuilt", "sampled"])
    for way in ("stored", "traced", "rebuilt", "sampled"):
        assert row[f"{way}_forward_s"] >= 0 and row[f"{way}_adjoint_s"] >= 0
    assert row["traced_max_rel_diff"] < 1e-5 and row["rebuilt_max_rel_diff"] < 1e-5 and row["sampled_max_rel_diff"] < 1e-4
    assert "stored_forward_s" not in one_case(24, 10, 2, torch.device("cpu"), 1.0, ["stored", "sampled"])


def test_flyscan_gain_scores_every_method():
    bench = load_bench("flyscan_gain")
    row = bench.one_setting(32, 3.0, 2000.0, 24)
    scores = [row[label] for label, _, _ in bench.METHODS]
    assert np.isfinite(scores).all() and all(10.0 < s < 40.0 for s in scores)


def test_flyscan_foreign_bench_scores_three_ways_on_astra_scans(tmp_path, monkeypatch):
    """bench/flyscan_foreign.py, small: astra-made fly-scans, every way scored and timed."""
    import json
    import sys

    import pytest

    pytest.importorskip("astra")
    bench = load_bench("flyscan_foreign")
    out = tmp_path / "ff.json"
    monkeypatch.setattr(sys, "argv", ["flyscan_foreign.py", "--sizes", "32", "--photons", "5000", "--angles", "30",
                                      "--iterations", "5", "--json", str(out)])
    bench.main()
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 2 and {r["phantom"] for r in rows} == {"shepp-logan", "cracked disc"}
    for r in rows:
        assert all(8.0 < r[w]["psnr_db"] < 40.0 and r[w]["seconds"] >= 0 for w in ("mlem", "fast", "subangle"))
