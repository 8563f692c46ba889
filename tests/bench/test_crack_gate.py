"""The crack gate bench: one synthetic heating experiment, one `flytomo run` per entry.

CI scores one entry (modified MLEM; the shipped network's gate is
tests/hpc/test_shipped_model_cracks.py); the slow job scores it beside the default network."""
import json

import pytest

from tests.bench import load_bench


def _gate(tmp_path, entries: list[str]) -> dict:
    out = tmp_path / "gate.json"
    assert load_bench("crack_gate").main([str(tmp_path / "exp"), *entries,
                                          "--scans", "3", "--size", "64", "--json", str(out)]) == 0
    rows = {r["entry"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == set(entries)
    for r in rows.values():
        assert r["scans"] == 3
        assert r["mae"] < 0.5 and abs(r["bias"]) <= r["mae"] <= r["max"], r
    return rows


def test_crack_gate_scores_an_entry(tmp_path):
    _gate(tmp_path, ["mlem-flyscan"])
    assert (tmp_path / "exp" / "analysis-mlem-flyscan" / "crack_table.csv").is_file()


@pytest.mark.slow
def test_crack_gate_scores_each_entry(tmp_path):
    _gate(tmp_path, ["mlem-flyscan", "default"])
    assert (tmp_path / "exp" / "analysis-default" / "crack_table.csv").is_file()
