"""The raw-defects bench on a small scan: every defect is mended to within a few tenths of a
dB of the clean scan, the axis is found through each, and each repair says so once.

CI runs every case with FBP (the axis, the warnings and FBP's quality: ~20 s); the slow job adds
modified MLEM (~5x that), whose thresholds are the finer ones."""
import pytest

from tests.bench import load_bench


def _rows(tmp_path, methods: tuple[str, ...]) -> tuple[dict, float]:
    bench = load_bench("raw_defects")
    result = bench.run(48, 72, tmp_path, methods=methods)
    rows = {r["case"]: r for r in result["rows"]}
    assert len(rows) == len(bench.CASES) == 27
    return rows, result["settings"]["true_center"]


def _check_axis_warnings_and_fbp(rows: dict, true_center: float) -> None:
    assert all(abs(r["center"] - true_center) < 0.5 for r in rows.values()), rows
    clean = rows["as simulated"]
    for case in ("dead column", "dropped frames", "unlit flats, a dark with beam", "air in the middle",
                 "zingers, --remove-outliers 0.3", "beam dips (30 % for a tenth, 40 % for one)"):
        assert rows[case]["fbp"] > clean["fbp"] - 0.4, (case, rows[case], clean)
    assert rows["zingers"]["fbp"] < clean["fbp"] - 2.0  # what the opt-in removal is for
    rings, mean = rows["rings (column gains)"], rows["rings, --remove-stripes mean"]
    assert mean["fbp"] > rings["fbp"] + 0.6, (mean, rings)
    assert rows["as simulated, --remove-stripes mean"]["fbp"] > clean["fbp"] - 0.1
    # flats brighter than the beam, a flux that changes between exposures: without --air-columns
    # a hint names the flag (the outer columns as flat as air, off zero); with it, none
    for case in ("flats 5 % brighter", "flux ±5 %"):
        assert [w for w in rows[case]["warnings"] if "read as flat as air, off zero" in w
                or "read more attenuation than air" in w], (case, rows[case]["warnings"])
        assert rows[f"{case}, --air-columns 8"]["warnings"] == []  # not where the flag is given
    saturated = rows["flats saturated (16-bit full scale)"]
    assert [w for w in saturated["warnings"] if "flat-field counts reach 65535, the detector's full scale" in w]
    # a wobbling stage (48³: FBP 18.34 clean, 12.06 jittered, 17.76 corrected)
    jitter, corrected = rows["jitter 1 px up/down, 1.5 px across"], rows["jitter, --correct-jitter"]
    assert corrected["fbp"] > clean["fbp"] - 1.5 and corrected["fbp"] > jitter["fbp"] + 4.0
    assert rows["as simulated, --correct-jitter"]["fbp"] > clean["fbp"] - 0.2
    assert abs(corrected["center"] - true_center) < 0.5
    assert [w for w in jitter["warnings"] if "centre of mass strays" in w] and corrected["warnings"] == []
    assert [r["case"] for r in rows.values() if any("centre of mass strays" in w for w in r["warnings"])] == \
        [jitter["case"]]  # the hint: no other case, air in the middle included
    assert rows["as simulated, --correct-tilt"]["fbp"] > clean["fbp"] - 0.1
    assert rows["as simulated"]["warnings"] == []
    assert [w for w in rows["dropped frames"]["warnings"] if "dropped frames" in w]
    assert [w for w in rows["air in the middle"]["warnings"] if "show no sample" in w]
    bad = rows["unlit flats, a dark with beam"]["warnings"]  # left out, each kind said once
    assert sorted(w.split(" look ")[0] for w in bad) == ["dark frame(s) 5 of 10", "flat frame(s) 3, 7 of 10"], bad


def test_every_defect_is_mended_and_reported_fbp(tmp_path):
    rows, true_center = _rows(tmp_path, ("fbp",))
    _check_axis_warnings_and_fbp(rows, true_center)


@pytest.mark.slow
def test_every_defect_is_mended_and_reported(tmp_path):
    rows, true_center = _rows(tmp_path, ("fbp", "mlem-flyscan"))
    _check_axis_warnings_and_fbp(rows, true_center)
    clean = rows["as simulated"]
    for case in ("dead column", "dropped frames", "unlit flats, a dark with beam", "air in the middle",
                 "zingers, --remove-outliers 0.3", "beam dips (30 % for a tenth, 40 % for one)"):
        assert rows[case]["mlem-flyscan"] > clean["mlem-flyscan"] - 0.3, (case, rows[case], clean)
    # ring artifacts: --remove-stripes mean takes most of them out (48³: MLEM 21.69 → 22.81 dB
    # against 23.50 clean), and costs the clean scan under 0.1 dB
    rings, mean = rows["rings (column gains)"], rows["rings, --remove-stripes mean"]
    assert rings["mlem-flyscan"] < clean["mlem-flyscan"] - 1.0
    assert mean["mlem-flyscan"] > rings["mlem-flyscan"] + 0.8, (mean, rings)
    assert rows["as simulated, --remove-stripes mean"]["mlem-flyscan"] > clean["mlem-flyscan"] - 0.1
    # --air-columns 8 levels both to the clean scan levelled (48³: MLEM 20.67 and 21.01 → 23.40, clean 23.50)
    levelled = rows["as simulated, --air-columns 8"]["mlem-flyscan"]
    assert levelled > clean["mlem-flyscan"] - 0.2
    for case in ("flats 5 % brighter", "flux ±5 %"):
        assert rows[case]["mlem-flyscan"] < clean["mlem-flyscan"] - 1.5
        assert abs(rows[f"{case}, --air-columns 8"]["mlem-flyscan"] - levelled) < 0.01, case
    saturated = rows["flats saturated (16-bit full scale)"]  # not mended: said (128³: MLEM 25.17 → 19.18 dB)
    assert saturated["mlem-flyscan"] < clean["mlem-flyscan"] - 2.0
    # a wobbling stage: --correct-jitter gives most of the clean quality back (48³: MLEM 23.50 clean,
    # 13.58 jittered, 22.44 corrected; 128³: within 0.5 dB, docs/benchmarks.md), ~0.1 dB on the clean scan
    jitter, corrected = rows["jitter 1 px up/down, 1.5 px across"], rows["jitter, --correct-jitter"]
    assert jitter["mlem-flyscan"] < clean["mlem-flyscan"] - 5.0
    assert corrected["mlem-flyscan"] > clean["mlem-flyscan"] - 1.5
    assert corrected["mlem-flyscan"] > jitter["mlem-flyscan"] + 4.0
    assert rows["as simulated, --correct-jitter"]["mlem-flyscan"] > clean["mlem-flyscan"] - 0.2
    # an axis leaning 0.5° (0.4 px over 48 rows): --correct-tilt turns the frames upright
    # (48³: MLEM 23.50 clean, 22.00 leaning, 23.39 corrected, 23.48 clean with the flag)
    tilted, upright = rows["axis tilted 0.5°"], rows["axis tilted, --correct-tilt"]
    assert upright["mlem-flyscan"] > clean["mlem-flyscan"] - 0.3
    assert upright["mlem-flyscan"] > tilted["mlem-flyscan"] + 1.0
    assert rows["as simulated, --correct-tilt"]["mlem-flyscan"] > clean["mlem-flyscan"] - 0.1
