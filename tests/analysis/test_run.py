"""analyze_time_point / analyze_store on synthetic experiment stores, serially and on Dask."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.run import PLOTS, analyze_store, analyze_time_point, default_out_dir
from analysis.segment import SegmentationParams
from analysis.store import open_store

from .conftest import SCALES
from .synth import SOLID, cracked_particle, write_store


def _png_ok(path):
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    return img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300 and img.std() > 0.01


def test_analyze_store_recovers_truth_and_trend(series_store, temperature_log, tmp_path, monkeypatch):
    import analysis.run

    path, truth, scans = series_store
    titles, montage = [], analysis.run.plot_montage
    monkeypatch.setattr(analysis.run, "plot_montage", lambda frames, where, title=None, **kw: (
        titles.append((title, [f["label"] for f in frames])), montage(frames, where, title=title, **kw))[1])
    out = analyze_store(path, temperature_log, out_dir=tmp_path / "out")
    # the montage's title names the store (a scan's id had taken its place), each frame its scan once
    assert len(titles) == 1 and titles[0][0].startswith(path.name), titles
    assert all(label.startswith("scan ") and not label.startswith("scan scan") for label in titles[0][1])
    t = out.table
    assert len(t) == len(SCALES) and (t["status"] == "ok").all()
    assert np.abs(t["crack_fraction"].to_numpy() - truth).max() < 0.005
    # the trend: same sign of change scan to scan as the truth (cracks open, then heal)
    assert (np.sign(np.diff(t["crack_fraction"])) == np.sign(np.diff(truth))).all()
    assert (t["n_pores"] == 3).all()
    # temperatures from the log: 150 °C/min ramp until 200 s, then a hold at 525 °C
    np.testing.assert_allclose(t["temperature_C"], np.interp(t["mid_time_s"], [0, 200, 1e9], [25, 525, 525]))
    ramp = (t["mid_time_s"] + 5 < 200).to_numpy()
    np.testing.assert_allclose(t["heating_rate_C_per_min"][ramp], 150.0)
    np.testing.assert_allclose(t["heating_rate_C_per_min"][t["mid_time_s"] - 5 > 200], 0.0)
    for f in ("crack_table.csv", "crack_table.parquet", "segmentation_params.json", "analysis_record.json",
              *PLOTS.values()):
        assert (tmp_path / "out" / f).is_file(), f
    # how it was made, for a colleague given only the folder (a blind probe: nothing said so)
    record = json.loads((tmp_path / "out" / "analysis_record.json").read_text())
    assert record["store"] == str(path.absolute()) and record["time_points"] == len(t)
    assert record["flytomo_version"] and record["segmentation"] == out.params.model_dump(mode="json")
    for p in out.plots.values():
        assert _png_ok(p)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    # three frames evenly spread (time points 0, 3, 6) miss the crack peak (4): it takes 3's place
    titles.clear()
    analyze_store(path, temperature_log, out_dir=tmp_path / "out3", montage_frames=3)
    peak = int(np.argmax(t["crack_fraction"]))
    assert peak == 4 and len(titles[0][1]) == 3, titles
    assert titles[0][0].endswith("through time (3 of 7 scans); t as on the time plot"), titles  # it shows some
    assert f"t {t['elapsed_min'][peak]:.1f} min" in titles[0][1][1], titles  # the time plot's clock (probe AG)
    assert f"cracks {100 * t['crack_fraction'][peak]:.2f}%" in titles[0][1][1], titles
    back = pd.read_parquet(out.parquet)  # the start's date is a timestamp there, null without Unix times
    assert back["start_time_utc"].isna().all()
    pd.testing.assert_frame_equal(back.drop(columns="start_time_utc"), t.drop(columns="start_time_utc"))


def test_time_point_is_pure_and_matches_map_fn(series_store, tmp_path):
    path, truth, _ = series_store
    r = analyze_time_point(str(path), 3, SegmentationParams().model_dump(), with_slice=True)
    assert r["t"] == 3 and r["status"] == "ok"
    assert abs(r["crack_fraction"] - truth[3]) < 0.005
    assert r["slice"]["image"].shape == (48, 48) and r["slice"]["cracks"].dtype == bool
    calls = []

    def my_map(fn, items):
        items = list(items)
        calls.append(len(items))
        return map(fn, items)

    a = analyze_store(path, out_dir=tmp_path / "a", map_fn=my_map, plots=False)
    assert calls == [len(SCALES)]
    with ThreadPoolExecutor(2) as pool:
        b = analyze_store(path, out_dir=tmp_path / "b", executor=pool, plots=False)
    pd.testing.assert_frame_equal(a.table, b.table)
    # without a log: temperatures from the scan metadata, rate from scan-to-scan differences
    assert np.isfinite(a.table["temperature_C"]).all()
    np.testing.assert_allclose(a.table["heating_rate_C_per_min"], 5.0)


def test_dask_local_cluster_matches_serial(series_store, tmp_path):
    distributed = pytest.importorskip("distributed")
    path, truth, _ = series_store
    serial = analyze_store(path, out_dir=tmp_path / "serial", plots=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        # the pure per-time-point function runs on the workers as it is
        futs = client.map(analyze_time_point, [str(path)] * 2, [0, 4], pure=False)
        rows = client.gather(futs)
        assert [r["t"] for r in rows] == [0, 4]
        out = analyze_store(path, out_dir=tmp_path / "dask", executor=client)
    pd.testing.assert_frame_equal(out.table, serial.table)
    assert (tmp_path / "dask" / "crack_montage.png").is_file()


def test_no_particle_scan_is_a_row_status(tmp_path):
    v0, _ = cracked_particle(48, n_cracks=2)
    empty = np.random.default_rng(0).normal(0, 0.004, v0.shape)
    scans = [{"index": i, "scan_id": i, "start_time_s": 10.0 * i, "mid_time_s": 10.0 * i + 4,
              "duration_s": 8.0, "temperature_C": 30.0} for i in range(3)]
    path = write_store(tmp_path / "s.zarr", np.stack([v0, empty, v0]), scans)
    out = analyze_store(path)
    assert list(out.table["status"]) == ["ok", "no particle found", "ok"]
    assert out.csv.parent == default_out_dir(path) == tmp_path / "s_analysis"
    assert all(_png_ok(p) for p in out.plots.values())


def test_other_particles_and_small_particles_are_said(tmp_path):
    """A blind probe's two-particle scans were rows of one particle with status ok and no
    word: now the table counts the others (column other_particles) and a warning names the
    scans; a particle under 20 voxels in equivalent radius gets a warning of its own."""
    one, tr = cracked_particle(48, n_cracks=2, seed=1)
    two = np.zeros((48, 48, 100), np.float32)
    two[:, :, :48] = one
    two[:, :, 52:] = cracked_particle(48, n_cracks=1, seed=2)[0]  # 4 voxels of air between them
    wide = np.zeros_like(two)
    wide[:, :, :48] = one
    scans = [{"index": i, "scan_id": f"s{i}", "start_time_s": 10.0 * i, "duration_s": 8.0, "temperature_C": 30.0}
             for i in range(2)]
    path = write_store(tmp_path / "s.zarr", np.stack([wide, two]), scans)
    with pytest.warns(UserWarning) as got:
        out = analyze_store(path, plots=False)
    texts = [str(w.message) for w in got]
    assert out.table["other_particles"].tolist() == [0, 1]
    assert list(out.table["status"]) == ["ok", "ok"]
    assert out.table["particle_volume_vox"].iloc[1] == pytest.approx(tr["particle"].sum(), rel=0.05)
    multi = [t for t in texts if "other particles" in t]
    assert len(multi) == 1 and "1 of 2 scans" in multi[0] and "scans s1)" in multi[0]
    small = [t for t in texts if "equivalent radius" in t]  # a 48-voxel phantom: radius 19.2
    assert len(small) == 1 and "2 of 2 scans" in small[0] and "smallest 19." in small[0]


def test_an_inverted_contrast_is_a_status_not_a_number(tmp_path):
    """Air brighter than the sample: the bright phase surrounds the field, the envelope fills
    it, and there is no background to measure cracks against (was: status ok, a whole-box
    particle, crack fraction 0.03 % of a true 6 %)."""
    vol, _ = cracked_particle(48, n_cracks=2)
    scans = [{"index": 0, "scan_id": 0, "start_time_s": 0.0, "duration_s": 8.0, "temperature_C": 30.0}]
    path = write_store(tmp_path / "inv.zarr", np.stack([SOLID - vol]), scans)
    out = analyze_store(path, plots=False)
    status = out.table["status"].iloc[0]
    assert status.startswith("the particle fills the field (100.0 % of voxels)") and "inverted" in status
    assert np.isnan(out.table["crack_fraction"].iloc[0])


def test_noisy_scans_get_one_warning(tmp_path):
    clean, _ = cracked_particle(48, n_cracks=2, noise=0.004)
    noisy, _ = cracked_particle(48, n_cracks=2, noise=0.02)
    scans = [{"index": i, "scan_id": i, "start_time_s": 10.0 * i, "duration_s": 8.0, "temperature_C": 30.0}
             for i in range(3)]
    path = write_store(tmp_path / "s.zarr", np.stack([clean, noisy, noisy]), scans)
    with pytest.warns(UserWarning) as got:
        out = analyze_store(path, plots=False)
    texts = [str(w.message) for w in got if "noisy at the crack scale" in str(w.message)]
    assert len(texts) == 1 and texts[0].startswith(f"{path}: 2 of 3 scans")
    assert (out.table["speck_fraction"] > 0.01).tolist() == [False, True, True]


def test_unwritten_time_point_is_a_row_status(tmp_path):
    import zarr

    v, _ = cracked_particle(48, n_cracks=1)
    scans = [{"index": i, "scan_id": i, "start_time_s": 20.0 * i, "duration_s": 8.0} for i in range(3)]
    g = zarr.open_group(str(tmp_path / "nan.zarr"), mode="w", zarr_format=2)
    a = g.create_array("0", shape=(3, 48, 48, 48), chunks=(1, 16, 48, 48), dtype="float32",
                       fill_value=float("nan"))
    a[0] = v
    a[2, :16] = v[:16]  # one unit of three written
    g.attrs["flytomo"] = {"scans": scans, "status": "incomplete"}
    out = analyze_store(tmp_path / "nan.zarr", out_dir=tmp_path / "o")
    st = out.table["status"].tolist()
    assert st[0] == "ok" and st[1] == "not reconstructed (no data)" and st[2].startswith("incomplete volume")
    assert all(_png_ok(p) for p in out.plots.values())


def test_single_scan_store_and_params_from_config(tmp_path):
    v, tr = cracked_particle(48, n_cracks=1)
    scans = [{"index": 0, "scan_id": "a1", "start_time_s": 0.0, "duration_s": 8.0, "temperature_C": None}]
    path = write_store(tmp_path / "one.zarr", v, scans, series=False,
                       extra_attrs={"config": {"analysis": {"segmentation": {"closing_radius": 2}}}})
    info = open_store(path)
    assert not info.is_series and info.n_times == 1 and info.volume_shape == (48, 48, 48)
    out = analyze_store(path, out_dir=tmp_path / "o")
    assert out.params.closing_radius == 2
    assert out.table["mid_time_s"].iloc[0] == 4.0
    assert abs(out.table["crack_fraction"].iloc[0] - tr["cracks"].sum() / tr["particle"].sum()) < 0.005


def test_heating_particle_phantom_if_available():
    phantoms = pytest.importorskip("recon.phantoms")
    if not hasattr(phantoms, "heating_particle"):
        pytest.skip("recon.phantoms.heating_particle not written yet")
    errs = []
    fracs, truths = [], []
    for level in (0.0, 0.5, 1.0):
        vol, crack = phantoms.heating_particle(64, level, 0)
        res = segment_volume_safe(vol)
        truth = crack.sum() / max(res.particle_volume_vox, 1)
        fracs.append(res.crack_fraction)
        truths.append(truth)
        errs.append(abs(res.crack_fraction - truth))
    assert max(errs) < 0.01, (fracs, truths)
    assert fracs[0] <= fracs[1] <= fracs[2]


def segment_volume_safe(vol):
    from analysis.segment import segment_volume

    res = segment_volume(np.asarray(vol, np.float32))
    assert res.status == "ok"
    return res


def test_extrapolate_from_store_config(tmp_path):
    from recon.errors import FlytomoError

    from .conftest import write_log

    v, _ = cracked_particle(48, n_cracks=1)
    scans = [{"index": i, "scan_id": i, "start_time_s": 100.0 * i, "duration_s": 8.0} for i in range(2)]
    log = write_log(tmp_path / "T.csv", t_end=50.0)
    plain = write_store(tmp_path / "a.zarr", np.stack([v, v]), scans)
    with pytest.raises(FlytomoError, match="scan 1"):
        analyze_store(plain, log, out_dir=tmp_path / "o", plots=False)
    cfg = write_store(tmp_path / "b.zarr", np.stack([v, v]), scans,
                      extra_attrs={"config": {"analysis": {"extrapolate": True, "segmentation": {}}}})
    out = analyze_store(cfg, log, out_dir=tmp_path / "o2", plots=False)
    assert (out.table["status"] == "ok").all()


def test_a_slab_of_a_large_particle_is_not_called_small(tmp_path):
    """A blind probe: 8 reconstructed rows of a particle 76 px across gave 'a particle under 20
    voxels in equivalent radius (19.3)' on every experiment (the radius of a sphere of the
    slab's volume). In a slab the size is the mean section's radius."""
    z, y, x = np.mgrid[:8, :96, :96]
    slab = np.where((y - 47.5) ** 2 + (x - 47.5) ** 2 < 38 ** 2, 0.02, 0.0).astype(np.float32)
    slab += np.random.default_rng(0).normal(0, 0.0005, slab.shape).astype(np.float32)
    scans = [{"index": i, "scan_id": f"s{i}", "start_time_s": 10.0 * i, "duration_s": 8.0, "temperature_C": 30.0}
             for i in range(2)]
    path = write_store(tmp_path / "s.zarr", np.stack([slab, slab]), scans)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        out = analyze_store(path, plots=False)
    assert list(out.table["status"]) == ["ok", "ok"]
    assert not [w for w in got if "equivalent radius" in str(w.message)]


def test_a_crack_fraction_that_falls_as_the_pores_rise_is_warned_about(tmp_path):
    """A third blind probe: a crack opened 24 voxels wide has a pore's shape (aspect 0.46): the
    table's crack fraction fell from 11 % to 0 while the pores rose as much, silently. No scan
    alone can tell; the series can."""
    from analysis.run import _warn_about_cracks_read_as_pores

    table = pd.DataFrame({"scan_id": ["a", "b", "c", "d"], "status": ["ok"] * 4,
                          "crack_fraction": [0.02, 0.11, 0.0, 0.001], "pore_fraction": [0.01, 0.01, 0.12, 0.12]})
    with pytest.warns(UserWarning, match=r"from scan b to c the cracks fell from 11.00 % to 0.00 % while the pores "
                                         r"rose from 1.00 % to 12.00 %"):
        _warn_about_cracks_read_as_pores(tmp_path, table)
    table["pore_fraction"] = 0.01  # cracks that close (a cooling particle): no pore rises
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_about_cracks_read_as_pores(tmp_path, table)


def test_blurred_scans_get_one_warning_and_their_edge_sigma(tmp_path):
    """Probe AD: volumes blurred by a Gaussian of σ ≥ 1.5 px read their 2-px cracks as a fraction
    of the truth, unsaid. The table's edge_sigma_px measures the surface's blur; a median at or
    above 1 px warns once, naming the crack widths at risk; sharp scans say nothing."""
    import warnings

    from scipy import ndimage as ndi

    sharp, truth = cracked_particle(64, n_cracks=3, noise=0.002)
    blurred = ndi.gaussian_filter(sharp, 2.0)
    scans = [{"index": i, "scan_id": i, "start_time_s": 10.0 * i, "duration_s": 8.0, "temperature_C": 30.0}
             for i in range(2)]
    path = write_store(tmp_path / "b.zarr", np.stack([blurred, blurred]), scans)
    with pytest.warns(UserWarning) as got:
        out = analyze_store(path, plots=False)
    texts = [str(w.message) for w in got if "edges are blurred" in str(w.message)]
    assert len(texts) == 1 and "a Gaussian σ of 2.0 px, the median of 2 scans" in texts[0], texts
    assert "cracks narrower than about 6 px" in texts[0]
    sig = out.table["edge_sigma_px"].to_numpy()
    assert np.all(np.abs(sig - 2.0) < 0.2), sig
    true = truth["cracks"].sum() / truth["particle"].sum()
    assert out.table["crack_fraction"].iloc[0] < 0.5 * true  # what the warning is about
    path = write_store(tmp_path / "s.zarr", np.stack([sharp, sharp]), scans)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*edges are blurred")
        out = analyze_store(path, plots=False)
    assert np.all(out.table["edge_sigma_px"] < 0.6), out.table["edge_sigma_px"]


def test_the_plots_are_titled_with_the_experiments_folder(tmp_path):
    """Every store `run` writes is experiment.zarr: titles name the experiment's folder instead
    (session 46's note), volumes made elsewhere the folder analyze copied them into."""
    from analysis.store import StoreInfo

    made = {"config": {"config_file": str(tmp_path / "heating-3" / "experiment.yaml")}}
    assert StoreInfo(tmp_path / "heating-3/recon/experiment.zarr", (2, 4, 4, 4), [], made).experiment_name == "heating-3"
    imported = {"method": "imported", "config": {}}
    assert StoreInfo(tmp_path / "mine/volumes.zarr", (2, 4, 4, 4), [], imported).experiment_name == "mine"
    assert StoreInfo(tmp_path / "scan_7.zarr", (4, 4, 4), [], {"method": "fbp"}).experiment_name == "scan_7.zarr"


def test_ring_artifacts_left_out_of_the_cracks_get_one_warning(tmp_path):
    from .test_segment import _ring

    v, _ = cracked_particle(48, crack_scale=0.0, noise=0.003)
    scans = [{"index": i, "scan_id": i, "start_time_s": 60.0 * i, "duration_s": 8.0} for i in range(2)]
    store = write_store(tmp_path / "r.zarr", np.stack([v, _ring(v, 10, 0.9)]), scans)
    with pytest.warns(UserWarning, match=r"1 of 2 scans hold dark rings around the axis \(up to [0-9.]+ % of the "
                                         r"particle; column ring_fraction\)"):
        out = analyze_store(store, out_dir=tmp_path / "o", plots=False)
    assert out.table["ring_fraction"].iloc[0] == 0 and out.table["ring_fraction"].iloc[1] > 0.02
    assert out.table["crack_fraction"].tolist() == [0.0, 0.0]
