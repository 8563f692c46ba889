"""The robustness sweep runs end to end on a tiny size (the documented run is larger)."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sweep_writes_a_full_grid_and_heat_maps(tmp_path):
    spec = importlib.util.spec_from_file_location("sweep", ROOT / "bench" / "sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    sweep.main(["--size", "32", "--per-cell", "1", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "sweep.json").read_text())
    for method in ("FBP", "modified MLEM", "RRDB"):
        grid = data["results"][method]["psnr"]
        assert len(grid) == 5 and all(len(r) == 5 for r in grid)
    fbp = data["results"]["FBP"]["psnr"]
    assert fbp[4][4] > fbp[0][0] + 3  # 360 projections at 10⁴ photons beat 60 at 500
    assert (tmp_path / "sweep_psnr.png").stat().st_size > 10_000
