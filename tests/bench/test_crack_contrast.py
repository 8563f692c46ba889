"""The crack-contrast bench: the truth scores 1, a blur that greys cracks scores below 1, a
model file runs end to end."""
import json
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from tests.bench import load_bench

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    return load_bench("crack_contrast")


def test_deficit_is_one_for_the_truth_and_falls_with_blur():
    bench = _bench()
    truth, cracks, envelope = bench.crack_slices(32, range(1))
    assert truth.shape == cracks.shape == envelope.shape == (8, 32, 32) and cracks.sum() > 20
    solid = float(np.median(truth[truth > 0]))
    ref = bench.crack_deficit(truth, cracks, envelope, solid)
    blurred = np.stack([gaussian_filter(t, 1.5) for t in truth])
    assert ref > cracks.sum() * 0.9
    assert bench.crack_deficit(blurred, cracks, envelope, solid) / ref < 0.9


def test_bench_runs_on_the_shipped_model(tmp_path):
    out = tmp_path / "c.json"
    assert _bench().main([str(ROOT / "recon" / "weights" / "rrdb-mlem-flyscan.safetensors"),
                          "--size", "32", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["method"] for r in rows][0] == "modified MLEM" and len(rows) == 2
    assert 0.5 < rows[0]["deficit_ratio"] < 1.5 and all(np.isfinite(r["psnr"]) for r in rows)


def test_a_missing_model_is_one_line_and_exit_2(tmp_path, capsys):
    assert _bench().main([str(tmp_path / "nope.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope.safetensors" in err and "\n" not in err
