"""The Table-1 bench runs end to end on a tiny size and its rows are ordered as physics says."""
import json

from tests.bench import load_bench


def test_quality_table_rows_and_yardstick(tmp_path):
    quality = load_bench("quality")
    out = tmp_path / "q.json"
    quality.main(["--size", "64", "--per-family", "1", "--photons", "200", "--iterations", "30",
                  "--reference-blur", "0.5", "2", "--json", str(out)])
    rows = {r["method"]: r for r in json.loads(out.read_text())["results"]}
    assert list(rows) == ["truth blurred by a 0.5-px Gaussian", "truth blurred by a 2-px Gaussian",
                          "FBP", "MLEM", "modified MLEM"]
    assert rows["truth blurred by a 0.5-px Gaussian"]["psnr_mean"] > rows["truth blurred by a 2-px Gaussian"]["psnr_mean"] + 5
    assert rows["modified MLEM"]["psnr_mean"] > rows["FBP"]["psnr_mean"] + 3  # photon-starved: MLEM wins
    assert set(rows["FBP"]["psnr_by_family"]) == {"heterogeneous", "cracked", "network", "radial"}

