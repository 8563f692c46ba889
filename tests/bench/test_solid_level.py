"""The solid-level bench: the true volumes of a small simulated heating experiment, every variant."""
import json

from tests.bench import load_bench


def test_solid_level_scores_every_variant(tmp_path):
    from hpc.cli import main as flytomo

    assert flytomo(["simulate-experiment", str(tmp_path / "exp"), "--size", "48", "--scans", "3", "--quiet"]) in (0, None)
    out = tmp_path / "s.json"
    bench = load_bench("solid_level")
    bench.main([f"truth:{tmp_path / 'exp'}", "--json", str(out)])
    rows = json.loads(out.read_text())["results"]
    assert [r["variant"] for r in rows] == list(bench.VARIANTS)
    for r in rows:
        assert len(r["measured_pct"]) == len(r["truth_pct"]) == 3
        assert r["mae_pp"] < 1.0 and abs(r["bias_pp"]) <= r["mae_pp"] <= r["max_pp"] + 1e-12, r
    # the uncracked first scan stays below both ramps' low share: the envelope's median, to the bit
    assert rows[0]["measured_pct"][0] == rows[1]["measured_pct"][0] == rows[2]["measured_pct"][0]
    # where cracks are many the solid level only rises away from them, and the fraction with it
    assert all(r["measured_pct"][1] >= rows[0]["measured_pct"][1] for r in rows[1:])
