"""The limited-angle axis bench: every set scored, the centroid's gain where the sample fits."""
import json

from tests.bench import load_bench


def test_limited_angle_center_bench(tmp_path):
    out = tmp_path / "c.json"
    load_bench("limited_angle_center").main(["--json", str(out)])
    rows = {(r["sample_px"], r["span_deg"]): r for r in json.loads(out.read_text())["rows"]}
    assert len(rows) == 8
    for span in (150, 120, 90):  # a sample inside the field: within half a pixel on average, 4× better
        r = rows[(96, span)]
        assert r["default_mean"] < 0.5 and r["default_mean"] < r["mirror_mean"] / 4, r
    for sample in (96, 128):  # whole half turns: the mirror, unchanged
        r = rows[(sample, 180)]
        assert r["default_mean"] == r["mirror_mean"] and r["default_mean"] < 0.25, r
