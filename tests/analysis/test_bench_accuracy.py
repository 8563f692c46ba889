"""Smoke test of bench/analysis_accuracy.py on a tiny simulate-experiment-like folder."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from tests.bench import load_bench

from .synth import cracked_particle, write_store


def _bench():
    return load_bench("analysis_accuracy")


def test_bench_prints_mae_per_method(tmp_path, capsys):
    exp = tmp_path / "exp"
    (exp / "truth").mkdir(parents=True)
    vols, truth = [], []
    for i, s in enumerate((0.0, 0.7, 1.2)):
        v, tr = cracked_particle(48, n_cracks=3, crack_scale=s, seed=i)
        vols.append(v)
        truth.append(tr["cracks"].sum() / tr["particle"].sum())
    pd.DataFrame({"scan_index": range(3), "crack_fraction": truth}).to_csv(exp / "truth" / "crack_fraction.csv",
                                                                           index=False)
    scans = [{"index": i, "scan_id": i, "start_time_s": 30.0 * i, "duration_s": 10.0, "temperature_C": 20.0 + i}
             for i in range(3)]
    write_store(exp / "recon" / "sharp.zarr", np.stack(vols), scans, extra_attrs={"method": "mlem-flyscan"})
    write_store(exp / "recon" / "blurry.zarr", np.stack([ndi.gaussian_filter(v, 1.2) for v in vols]), scans,
                extra_attrs={"method": "fbp"})
    write_store(exp / "recon" / "net.zarr", np.stack(vols), scans,
                extra_attrs={"method": "rrdb", "model": {"name": "m", "input_kind": "mlem-flyscan"}})
    assert _bench().main([str(exp), "--estimators", "threshold,partial_volume"]) == 0
    text = capsys.readouterr().out
    assert "mlem-flyscan" in text and "fbp" in text
    res = json.loads((exp / "bench" / "analysis_accuracy" / "analysis_accuracy.json").read_text())
    m = res["methods"]
    assert m["mlem-flyscan"]["scans"] == 3 and m["mlem-flyscan"]["mae_pp"] < 0.5
    assert m["fbp"]["mae_pp"] > m["mlem-flyscan"]["mae_pp"]
    assert "mlem-flyscan [pv]" in m and m["mlem-flyscan [pv]"]["mae_pp"] < 0.5
    # an rrdb store is labelled by the first stage its network corrected (its provenance)
    assert m["rrdb on mlem-flyscan"]["mae_pp"] == m["mlem-flyscan"]["mae_pp"]
    assert (exp / "bench" / "analysis_accuracy" / "analysis_accuracy.png").stat().st_size > 10_000


def test_bench_without_truth_is_exit_2(tmp_path, capsys):
    assert _bench().main([str(tmp_path)]) == 2
    assert "crack_fraction.csv" in capsys.readouterr().err
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "crack_fraction.csv").write_text("scan_index,crack_fraction\n0,0.1\n")
    assert _bench().main([str(tmp_path), "--estimators", "magic"]) == 2
    assert "magic" in capsys.readouterr().err
