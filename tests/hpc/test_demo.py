"""``flytomo demo`` end to end at a tiny size: simulate, run, analyse, summary."""
from __future__ import annotations

from hpc.cli import main


def test_demo_small(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "32", "--scans", "4", "--method", "fbp",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "store" in text and str(out / "recon" / "experiment.zarr") in text
    assert (out / "analysis" / "crack_table.csv").is_file()
    assert "table" in text and "plot" in text and "correlation" in text
    # a second demo in the same folder resumes: nothing to redo
    assert main(["demo", "--out", str(out), "--no-progress", "--no-analysis"]) == 0
    assert "0 done now" in capsys.readouterr().out
