"""The crack gate bench: one synthetic heating experiment, one `flytomo run` per entry."""
import json

from tests.bench import load_bench


def test_crack_gate_scores_each_entry(tmp_path):
    out = tmp_path / "gate.json"
    assert load_bench("crack_gate").main([str(tmp_path / "exp"), "mlem-flyscan", "default",
                                          "--scans", "3", "--size", "64", "--json", str(out)]) == 0
    rows = {r["entry"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"mlem-flyscan", "default"}
    for r in rows.values():
        assert r["scans"] == 3
        assert r["mae"] < 0.5 and abs(r["bias"]) <= r["mae"] <= r["max"], r
    assert (tmp_path / "exp" / "analysis-default" / "crack_table.csv").is_file()
