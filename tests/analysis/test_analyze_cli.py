"""``flytomo analyze``: outputs, and one-line errors with exit code 2."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hpc.cli import main

from .conftest import write_log
from .synth import cracked_particle, write_store


def _err_line(capsys):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("flytomo: error: ")
    return err


def test_without_temperature_the_configs_log_is_used(tmp_path, capsys):
    """`analyze STORE` with no --temperature took the rates from differences between scans 3
    min apart (holds read 25-34 C/min); the log the store's experiment config names is used
    now, as `flytomo run` does, and without any log the rates come with a warning."""
    import pytest

    from .synth import heating_series

    folder = tmp_path / "exp"
    (folder / "raw").mkdir(parents=True)
    log = write_log(folder / "raw" / "T.csv")
    store, _, _ = heating_series(folder / "s.zarr", (0.0, 0.5, 1.0, 1.0), size=48)
    import zarr

    g = zarr.open_group(str(store), mode="r+")
    attrs = dict(g.attrs["flytomo"])
    attrs["config"] = {"temperature_log": "raw/T.csv", "config_file": str(folder / "experiment.yaml")}
    g.attrs["flytomo"] = attrs
    assert main(["analyze", str(store), "--out", str(tmp_path / "a")]) == 0
    assert f"temperature log: {log} (the experiment config's" in capsys.readouterr().out
    assert main(["analyze", str(store), "--temperature", str(log), "--out", str(tmp_path / "b")]) == 0
    a, b = (pd.read_csv(tmp_path / d / "crack_table.csv") for d in "ab")
    pd.testing.assert_series_equal(a["heating_rate_C_per_min"], b["heating_rate_C_per_min"])
    assert a["heating_rate_C_per_min"].round(1).tolist()[:2] == [150.0, 150.0]
    attrs["config"] = {}
    g.attrs["flytomo"] = attrs
    with pytest.warns(UserWarning, match="no temperature log: each heating rate is the slope between"):
        assert main(["analyze", str(store), "--out", str(tmp_path / "c")]) == 0


def test_analyze_writes_table_and_plots(series_store, tmp_path, capsys):
    path, truth, _ = series_store
    log = write_log(tmp_path / "T.csv")
    out = tmp_path / "res"
    assert main(["analyze", str(path), "--temperature", str(log), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "7 ok" in text and "crack_table.csv" in text
    t = pd.read_csv(out / "crack_table.csv")
    assert np.abs(t["crack_fraction"] - truth).max() < 0.005
    assert (out / "crack_table.parquet").is_file() and (out / "crack_montage.png").is_file()


def test_an_analysis_stopped_half_way_leaves_the_earlier_one_whole(series_store, tmp_path, monkeypatch):
    """A second analysis into the same folder that stops while drawing (here: the montage
    fails; a full disk likewise) leaves the earlier analysis as it was, table and plots, and
    no new file beside them (it removed the earlier files first, and a full disk lost the
    table: a blind probe); nothing half-written is left."""
    import analysis.run as run

    path, _, _ = series_store
    out = tmp_path / "res"
    assert main(["analyze", str(path), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "crack_table.csv" in before and "crack_montage.png" in before

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "plot_montage", stop)
    assert main(["analyze", str(path), "--out", str(out), "--params", str(_params(tmp_path))]) == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_second_analysis_into_the_same_folder_is_refused_and_sigterm_keeps_the_earlier_one(series_store, tmp_path):
    """Blind probe AF: two analyses into one folder shared its .analysis.partial and left a table
    beside the other analysis's record and plots (or an empty folder), and SIGTERM left
    .analysis.partial without a word. Now the folder is locked while an analysis runs: a second
    is refused in one line (exit 2) and the first finishes whole; SIGTERM says what is kept and
    leaves the earlier analysis as it was, with no lock or partial folder behind."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    path, _, _ = series_store
    out = tmp_path / "res"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    cmd = [sys.executable, "-m", "hpc.cli", "analyze", str(path), "--out", str(out)]

    def start(*extra: str) -> subprocess.Popen:
        """An analysis, paused (SIGSTOP) once it holds the folder's lock."""
        proc = subprocess.Popen([*cmd, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(1200):
            if (out / ".analysis.lock").exists() or proc.poll() is not None:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGSTOP)
        return proc

    first = start("--params", str(_params(tmp_path)))
    second = subprocess.run(cmd, capture_output=True, text=True, env=env)
    first.send_signal(signal.SIGCONT)
    assert second.returncode == 2, second.stderr
    last = second.stderr.strip().splitlines()[-1]
    assert last.startswith(f"flytomo: error: {out}: another flytomo analysis is writing it (pid"), second.stderr
    assert first.wait(timeout=300) == 0, first.communicate()[1]
    record = json.loads((out / "analysis_record.json").read_text())
    assert record["segmentation"]["closing_radius"] == 2  # the table and record of the one that ran
    assert json.loads((out / "segmentation_params.json").read_text())["closing_radius"] == 2
    before = {q.name: q.read_bytes() for q in out.iterdir()}
    stopped = start()
    stopped.send_signal(signal.SIGTERM)  # held until it goes on
    stopped.send_signal(signal.SIGCONT)
    err = stopped.communicate(timeout=120)[1]
    assert stopped.returncode == 143 and err.strip().splitlines()[-1] == (
        "flytomo: stopped by SIGTERM: nothing of this analysis is kept; an earlier one in its folder stays whole; "
        "run the same command again"), err
    assert {q.name: q.read_bytes() for q in out.iterdir()} == before  # no lock, no .analysis.partial


def test_an_analysis_replacing_one_made_otherwise_names_each_changed_setting(series_store, tmp_path, capsys):
    """Blind probe AG: `analyze --params` over an analysis, and then a plain `run` over that one,
    replaced tuned settings without a word. Each changed setting is now named, once."""
    import warnings

    path, _, _ = series_store
    out = tmp_path / "res"

    def said(*extra: str) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["analyze", str(path), "--out", str(out), *extra]) == 0
        return [str(w.message) for w in caught if "replaces an analysis" in str(w.message)]

    assert said() == []
    lines = said("--params", str(_params(tmp_path)))
    assert len(lines) == 1 and "(closing_radius: 4 there, 2 now); flytomo run analyses with its config's" in lines[0]
    assert said("--params", str(_params(tmp_path))) == []  # the same settings again


def _params(folder):
    (folder / "p.yaml").write_text("segmentation:\n  closing_radius: 2\n")
    return folder / "p.yaml"


def test_params_file_and_workers(series_store, tmp_path):
    path, _, _ = series_store
    (tmp_path / "p.yaml").write_text("segmentation:\n  closing_radius: 2\n  min_defect_voxels: 10\n")
    assert main(["analyze", str(path), "--out", str(tmp_path / "o"), "--params", str(tmp_path / "p.yaml"),
                 "--workers", "2"]) == 0
    assert '"closing_radius": 2' in (tmp_path / "o" / "segmentation_params.json").read_text()


def test_bad_params_file(series_store, tmp_path, capsys):
    path, _, _ = series_store
    (tmp_path / "p.json").write_text('{"sigma": -2}')
    assert main(["analyze", str(path), "--params", str(tmp_path / "p.json")]) == 2
    assert "p.json" in _err_line(capsys)
    (tmp_path / "log.csv").write_text("time_s,temperature_C\n0,20\n")  # the log given as --params
    assert main(["analyze", str(path), "--params", str(tmp_path / "log.csv")]) == 2
    assert "--params takes a .json or .yaml file of segmentation parameters" in _err_line(capsys)


def test_missing_store(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nope.zarr")]) == 2
    assert "nope.zarr: no such experiment store" in _err_line(capsys)


def test_not_a_store(tmp_path, capsys):
    (tmp_path / "junk").mkdir()
    assert main(["analyze", str(tmp_path / "junk")]) == 2
    assert "junk: no volume files there (.tif, .tiff, .npy, .h5, .hdf5, .nxs), and not an experiment store" in \
        _err_line(capsys)
    import zarr

    zarr.save_array(str(tmp_path / "bare.zarr"), np.zeros((4, 4, 4), np.float32))
    assert main(["analyze", str(tmp_path / "bare.zarr")]) == 2  # was: "not a readable zarr store"
    line = _err_line(capsys)
    assert "bare.zarr: is a bare zarr array, not an experiment store" in line and "flytomo run" in line


def test_store_without_times(tmp_path, capsys):
    v, _ = cracked_particle(48)
    path = write_store(tmp_path / "notimes.zarr", v[None], scans=None)
    assert main(["analyze", str(path)]) == 2
    assert "notimes.zarr" in _err_line(capsys)
    path = write_store(tmp_path / "notimes2.zarr", v[None], scans=[{"index": 0, "scan_id": 7}])
    assert main(["analyze", str(path)]) == 0  # files of some tools record no time: scan order
    capsys.readouterr()
    log = write_log(tmp_path / "log.csv")
    assert main(["analyze", str(path), "--temperature", str(log), "--out", str(tmp_path / "o")]) == 2
    err = _err_line(capsys)
    assert "log.csv" in err and "scan 7" in err and "no time" in err
    assert not (tmp_path / "o" / "crack_table.csv").exists()


def test_empty_store(tmp_path, capsys):
    path = write_store(tmp_path / "empty.zarr", np.zeros((0, 48, 48, 48), np.float32), scans=[])
    assert main(["analyze", str(path)]) == 2
    assert "empty" in _err_line(capsys)
    assert not (tmp_path / "empty_analysis" / "crack_table.csv").exists()


def test_log_not_covering_is_an_error_unless_extrapolate(series_store, tmp_path, capsys):
    path, _, scans = series_store
    log = write_log(tmp_path / "short.csv", t_end=200.0)
    out = tmp_path / "o"
    assert main(["analyze", str(path), "--temperature", str(log), "--out", str(out)]) == 2
    err = _err_line(capsys)
    assert "short.csv" in err and f"scan {scans[3]['scan_id']}" in err
    assert not (out / "crack_table.csv").exists()  # nothing claims to be complete
    assert main(["analyze", str(path), "--temperature", str(log), "--out", str(out), "--extrapolate"]) == 0
    assert (out / "crack_table.csv").is_file()


def test_no_particle_scan_reported_in_status(tmp_path, capsys):
    v, _ = cracked_particle(48)
    scans = [{"index": i, "scan_id": i, "start_time_s": 10.0 * i, "duration_s": 8.0} for i in range(2)]
    path = write_store(tmp_path / "s.zarr", np.stack([v, np.zeros_like(v)]), scans)
    assert main(["analyze", str(path), "--out", str(tmp_path / "o")]) == 0
    assert "1 not" in capsys.readouterr().out
    t = pd.read_csv(tmp_path / "o" / "crack_table.csv")
    assert t["status"].tolist() == ["ok", "no data (volume is constant)"]


def test_analyze_reads_the_experiment_config_as_it_is_now(tmp_path, capsys):
    """A blind probe: after the log and the segmentation were edited in experiment.yaml, `run`
    used the edits and `analyze STORE` the store's copy of the config from when it was made,
    writing the same table folder (which then changed with whichever ran last). Now both read
    the file as it is; a file gone, or naming another output, leaves the store's copy."""
    import json

    import zarr

    from .synth import heating_series

    folder = tmp_path / "exp"
    (folder / "raw").mkdir(parents=True)
    write_log(folder / "raw" / "T.csv")
    write_log(folder / "raw" / "hot.csv", ramp_end=100.0)  # the edited log: 300 C/min
    store, _, _ = heating_series(folder / "s.zarr", (0.0, 0.5, 1.0, 1.0), size=48)
    cfg_file = folder / "experiment.yaml"
    g = zarr.open_group(str(store), mode="r+")
    attrs = dict(g.attrs["flytomo"])
    attrs["config"] = {"temperature_log": "raw/T.csv", "config_file": str(cfg_file), "output": "s.zarr",
                       "analysis": {"segmentation": {}}}
    g.attrs["flytomo"] = attrs
    cfg_file.write_text("output: s.zarr\ntemperature_log: raw/hot.csv\nanalysis:\n  segmentation: {closing_radius: 3}\n")
    assert main(["analyze", str(store), "--out", str(tmp_path / "a")]) == 0
    assert "raw/hot.csv (the experiment config's" in capsys.readouterr().out
    assert json.loads((tmp_path / "a" / "segmentation_params.json").read_text())["closing_radius"] == 3
    assert pd.read_csv(tmp_path / "a" / "crack_table.csv")["heating_rate_C_per_min"].round(1).tolist()[0] == 300.0
    cfg_file.write_text("output: other.zarr\ntemperature_log: raw/hot.csv\n")  # now another experiment's
    assert main(["analyze", str(store), "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "raw/T.csv (the experiment config's" in out
    assert "experiment.yaml now makes another store (" in out and "the store's copy of its experiment config" in out
    assert json.loads((tmp_path / "b" / "segmentation_params.json").read_text())["closing_radius"] == 4


def test_analyze_finds_the_config_of_a_moved_experiment_folder(tmp_path, capsys):
    """A blind probe: after the experiment folder was copied (scratch to a share), `analyze`
    read the first folder's config and log (or, that folder gone, no log at all) while `run`
    in the copy read the copy's. The config is looked for where it sits beside the store as it
    sat beside the store it made."""
    import shutil

    import zarr

    from .synth import heating_series

    old = tmp_path / "scratch"
    (old / "raw").mkdir(parents=True)
    write_log(old / "raw" / "T.csv")
    (old / "recon").mkdir()
    store, _, _ = heating_series(old / "recon" / "s.zarr", (0.0, 0.5, 1.0, 1.0), size=48)
    g = zarr.open_group(str(store), mode="r+")
    attrs = dict(g.attrs["flytomo"])
    attrs["config"] = {"temperature_log": "raw/T.csv", "config_file": str(old / "experiment.yaml"),
                       "output": "recon/s.zarr", "analysis": {"segmentation": {}}}
    g.attrs["flytomo"] = attrs
    (old / "experiment.yaml").write_text("output: recon/s.zarr\ntemperature_log: raw/T.csv\n")
    new = tmp_path / "share"
    shutil.copytree(old, new)
    shutil.rmtree(old)
    write_log(new / "raw" / "T.csv", ramp_end=100.0)  # the copy's log, edited: 300 C/min
    assert main(["analyze", str(new / "recon" / "s.zarr"), "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert f"temperature log: {new / 'raw' / 'T.csv'}" in out and "note:" not in out, out
    assert pd.read_csv(tmp_path / "a" / "crack_table.csv")["heating_rate_C_per_min"].round(1).tolist()[0] == 300.0
    # absolute paths (as simulate-experiment and init write them), the folder moved again: the log
    # is found where it sits beside the store as it did (blind probe Z: dropped without a word)
    attrs["config"] = {"temperature_log": str(old / "raw" / "T.csv"), "config_file": str(old / "experiment.yaml"),
                       "output": str(old / "recon" / "s.zarr"), "analysis": {"segmentation": {}}}
    shutil.copytree(new, old)  # the store as made there (absolute paths), then moved away again
    shutil.rmtree(new)
    zarr.open_group(str(old / "recon" / "s.zarr"), mode="r+").attrs["flytomo"] = attrs
    (old / "experiment.yaml").write_text(f"output: {old / 'recon' / 's.zarr'}\ntemperature_log: {old / 'raw' / 'T.csv'}\n")
    shutil.move(old, new)
    assert main(["analyze", str(new / "recon" / "s.zarr"), "--out", str(tmp_path / "b")]) == 0
    assert f"temperature log: {new / 'raw' / 'T.csv'}" in capsys.readouterr().out
    (new / "raw" / "T.csv").unlink()
    with pytest.warns(UserWarning, match=r"T\.csv: the temperature log the experiment config names is gone"):
        assert main(["analyze", str(new / "recon" / "s.zarr"), "--out", str(tmp_path / "c")]) == 0


def test_nothing_analysable_exits_1_and_bad_settings_are_each_named(series_store, tmp_path, capsys):
    """A blind probe: a store where no scan could be analysed (all constant) exited 0; a params
    file with two problems named one ('2 problem(s)'); --workers 0 was taken."""
    flat = write_store(tmp_path / "flat.zarr", np.zeros((2, 16, 32, 32), np.float32),
                       scans=[{"index": i, "scan_id": i} for i in range(2)])
    assert main(["analyze", str(flat), "--out", str(tmp_path / "o")]) == 1
    assert "flat.zarr: no scan could be analysed" in capsys.readouterr().err
    assert (tmp_path / "o" / "crack_table.csv").exists()  # the status column says why
    path, _, _ = series_store
    (tmp_path / "p.json").write_text('{"defect_fraction": 7, "not_a_key": 1}')
    assert main(["analyze", str(path), "--params", str(tmp_path / "p.json")]) == 2
    line = _err_line(capsys)
    assert "key 'defect_fraction'" in line and "key 'not_a_key': unknown key" in line
    assert main(["analyze", str(path), "--workers", "0"]) == 2
    assert "--workers must be ≥ 1, got 0" in _err_line(capsys)


def test_volumes_made_elsewhere_are_analysed_one_file_a_scan(tmp_path, capsys):
    """A blind probe: analyze read only flytomo's stores; TIFF stacks, .npy and HDF5 volumes (as
    tomopy and TomocuPy users have them) were refused. Now one file is one scan, in file-name
    order (scan_2 before scan_10), copied into OUT/volumes.zarr, with the same numbers as a store
    of the same volumes; a temperature log is refused (no times); other shapes are named."""
    import h5py
    import tifffile

    vols = [cracked_particle(48, crack_scale=s, seed=1)[0] for s in (0.0, 0.6, 1.0)]
    (tmp_path / "v").mkdir()
    tifffile.imwrite(tmp_path / "v" / "scan_2.tif", vols[0])
    np.save(tmp_path / "v" / "scan_10.npy", vols[1])
    with h5py.File(tmp_path / "v" / "scan_11.h5", "w") as f:
        f["exchange/data"] = vols[2]  # where dxchange.write_hdf5 puts a reconstruction
        f["exchange/pixel_size"] = np.arange(3.0)  # not 3-D: not a candidate
    out = tmp_path / "an"
    assert main(["analyze", str(tmp_path / "v"), "--out", str(out)]) == 0
    assert "read 3 volume(s) as scans 0..2 in file-name order" in capsys.readouterr().out
    got = pd.read_csv(out / "crack_table.csv")
    assert got["scan_id"].astype(str).tolist() == ["scan_2", "scan_10", "scan_11"]
    ref = write_store(tmp_path / "ref.zarr", np.stack(vols), scans=[{"index": i, "scan_id": i} for i in range(3)])
    assert main(["analyze", str(ref), "--out", str(tmp_path / "ref_an")]) == 0
    want = pd.read_csv(tmp_path / "ref_an" / "crack_table.csv")
    np.testing.assert_array_equal(got["crack_fraction"], want["crack_fraction"])
    assert got["crack_fraction"].iloc[0] == 0 and got["crack_fraction"].iloc[2] > got["crack_fraction"].iloc[1] > 0
    capsys.readouterr()
    assert main(["analyze", str(tmp_path / "v" / "scan_*.tif"), "-T", "log.csv"]) == 2
    assert "carry no scan times" in _err_line(capsys)
    np.save(tmp_path / "v" / "scan_12.npy", vols[0][:40])
    assert main(["analyze", str(tmp_path / "v"), "--out", str(out)]) == 2
    assert "scan_12.npy: volume of shape (40, 48, 48), the first (scan_2.tif) is (48, 48, 48)" in _err_line(capsys)
    # the earlier analysis and its store stay whole; no store in progress is left
    assert pd.read_csv(out / "crack_table.csv").equals(got) and (out / "volumes.zarr").is_dir()
    assert not (out / ".volumes.zarr.partial").exists()


def test_files_that_are_no_volumes_are_refused_by_name(tmp_path, capsys):
    """A second blind probe: a raw Data Exchange scan was analysed as a volume ('ok', 0 %);
    single-slice TIFFs beside a volume dropped the volume silently; a 2-D .npy was a 'volume';
    an empty array was blamed on the store in progress."""
    import h5py
    import tifffile

    vol = cracked_particle(48, seed=1)[0]
    cases = {}
    raw = tmp_path / "raw"
    raw.mkdir()
    with h5py.File(raw / "scan.h5", "w") as f:
        f["exchange/data"], f["exchange/data_white"] = vol, vol[:2]
    cases[raw] = "scan.h5: is a raw scan (it holds 'exchange/data_white'): reconstruct it first"
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for z in range(3):
        tifffile.imwrite(mixed / f"s_{z}.tif", vol[z])
    np.save(mixed / "v.npy", vol)
    cases[mixed] = "mixes single-slice TIFFs (one volume together) with other files (v.npy)"
    flat = tmp_path / "flat.npy"
    np.save(flat, vol[10])
    cases[flat] = "flat.npy: is one slice (y, x)"
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 48, 48), np.float32))
    cases[empty] = "empty.npy: holds no voxels (shape (0, 48, 48))"
    for spec, words in cases.items():
        assert main(["analyze", str(spec), "--out", str(tmp_path / "o")]) == 2
        assert words in _err_line(capsys)


def test_volume_files_with_a_scan_list_get_times_and_temperatures(tmp_path, capsys):
    """Volumes made elsewhere carry no times: a scan list (file, time and/or temperature, as a
    log's columns are read) gives them, so the temperature log is joined; a file not on the
    list is named; --scan-list beside a store is refused."""
    import tifffile

    vols = [cracked_particle(48, crack_scale=s, seed=1)[0] for s in (0.0, 0.6, 1.0)]
    (tmp_path / "v").mkdir()
    for i, v in enumerate(vols):
        tifffile.imwrite(tmp_path / "v" / f"scan_{i}.tif", v)
    log = write_log(tmp_path / "log.csv")
    (tmp_path / "list.csv").write_text("file;Time (min)\nscan_0.tif;0,5\nscan_1;1,5\nscan_2.tif;2,5\n")
    out = tmp_path / "an"
    assert main(["analyze", str(tmp_path / "v"), "--scan-list", str(tmp_path / "list.csv"), "-T", str(log),
                 "--out", str(out)]) == 0
    assert "times and temperatures from" in capsys.readouterr().out
    t = pd.read_csv(out / "crack_table.csv")
    assert t["start_time_s"].tolist() == [30.0, 90.0, 150.0]
    # the log's at each scan's time (it ramps 2.5 °C/s from 25 °C)
    np.testing.assert_allclose(t["temperature_C"], 25 + 2.5 * t["mid_time_s"])
    assert t["temperature_C"].is_monotonic_increasing and t["temperature_C"].iloc[0] >= 100
    # a duration column: the time is the scan's start, its temperature read at mid-scan (blind
    # probe R: duration_s was ignored, each scan read at its start, 15 °C low on a ramp)
    (tmp_path / "timed.csv").write_text("file,time_s,duration_s\nscan_0,30,12\nscan_1,90,12\nscan_2,150,12\n")
    assert main(["analyze", str(tmp_path / "v"), "--scan-list", str(tmp_path / "timed.csv"), "-T", str(log),
                 "--out", str(out)]) == 0
    t = pd.read_csv(out / "crack_table.csv")
    assert t["start_time_s"].tolist() == [30.0, 90.0, 150.0] and t["mid_time_s"].tolist() == [36.0, 96.0, 156.0]
    np.testing.assert_allclose(t["temperature_C"], 25 + 2.5 * t["mid_time_s"])
    (tmp_path / "timed.csv").write_text("file,time_s,duration_s\nscan_0,30,12\nscan_1,90,abc\nscan_2,150,12\n")
    assert main(["analyze", str(tmp_path / "v"), "--scan-list", str(tmp_path / "timed.csv"), "--out", str(out)]) == 2
    assert "timed.csv: line 3: duration_s must be a duration ≥ 0 (got 'abc')" in _err_line(capsys)
    (tmp_path / "temps.csv").write_text("name,T (K)\nscan_0,300\nscan_1,400\nscan_2,500\n")
    assert main(["analyze", str(tmp_path / "v"), "--scan-list", str(tmp_path / "temps.csv"), "--out", str(out)]) == 0
    np.testing.assert_allclose(pd.read_csv(out / "crack_table.csv")["temperature_C"], [26.85, 126.85, 226.85])
    (tmp_path / "short.csv").write_text("file,temperature_C\nscan_0,20\nscan_1,30\n")
    assert main(["analyze", str(tmp_path / "v"), "--scan-list", str(tmp_path / "short.csv"), "--out", str(out)]) == 2
    assert "short.csv: does not list scan_2.tif" in _err_line(capsys)
    assert main(["analyze", str(out / "volumes.zarr"), "--scan-list", str(tmp_path / "temps.csv")]) == 2
    assert "--scan-list is for volume files" in _err_line(capsys)
    # a bad log is named before any volume is copied (blind probe AD: after the whole import)
    (tmp_path / "badlog.csv").write_text("seconds,degrees\n0,20\n60,30\n")
    fresh = tmp_path / "an-badlog"
    assert main(["analyze", str(tmp_path / "v"), "--scan-list", str(tmp_path / "list.csv"), "-T",
                 str(tmp_path / "badlog.csv"), "--out", str(fresh)]) == 2
    assert "badlog.csv: no column of the temperature log reads as the sample's temperature" in _err_line(capsys)
    assert not (fresh / "volumes.zarr").exists()


def test_imported_volumes_keep_their_voxel_size_and_a_time_axis_only_where_it_is_even(tmp_path):
    """A blind probe: Fiji stacks of 21.6 nm voxels became a store of unit-less voxels, whose
    time axis claimed seconds 1 s apart while the listed scans were 0, 100 and 800 s apart."""
    import json

    import tifffile

    vols = [cracked_particle(32, crack_scale=s, seed=1)[0] for s in (0.0, 0.6, 1.0)]
    (tmp_path / "v").mkdir()
    for i, v in enumerate(vols):
        tifffile.imwrite(tmp_path / "v" / f"scan_{i}.tif", v, imagej=True, resolution=(1 / 0.0216, 1 / 0.0216),
                         metadata={"unit": "um", "spacing": 0.0216, "axes": "ZYX"})
    for name, times, step in (("uneven", (0, 100, 800), None), ("even", (30, 90, 150), 60.0)):
        (tmp_path / f"{name}.csv").write_text("file,time_s\n" + "".join(f"scan_{i},{t}\n" for i, t in enumerate(times)))
        out = tmp_path / name
        assert main(["analyze", str(tmp_path / "v"), "--scan-list", str(tmp_path / f"{name}.csv"), "--out",
                     str(out)]) == 0
        ms = json.loads((out / "volumes.zarr" / ".zattrs").read_text())["multiscales"][0]
        scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
        assert [a.get("unit") for a in ms["axes"][1:]] == ["nanometer"] * 3
        assert scale[1:] == pytest.approx([21.6] * 3)
        assert ms["axes"][0].get("unit") == ("second" if step else None) and scale[0] == (step or 1.0)


def test_an_all_nan_volume_file_is_no_data_not_unreconstructed(tmp_path):
    """Blind probe AD: a volume file made elsewhere, every voxel NaN, read "not reconstructed (no
    data)", words for a scan flytomo did not reconstruct."""
    (tmp_path / "v").mkdir()
    vol = cracked_particle(48, seed=1)[0]
    np.save(tmp_path / "v" / "scan_0.npy", vol)
    np.save(tmp_path / "v" / "scan_1.npy", np.full_like(vol, np.nan))
    assert main(["analyze", str(tmp_path / "v"), "--out", str(tmp_path / "an")]) == 0
    t = pd.read_csv(tmp_path / "an" / "crack_table.csv")
    assert t["status"].tolist() == ["ok", "no data (every voxel NaN or infinite)"], t["status"].tolist()


def test_the_configs_log_start_goes_with_its_log_and_another_log_takes_log_start(tmp_path, capsys):
    """A store whose scans record dates, its config's log counting from its own 0 with
    ``temperature_log_start``: `analyze STORE` reads that log on the scans' clock; another log
    given with -T keeps its own clock unless --log-start gives it one."""
    import shutil

    import zarr

    from .synth import heating_series

    folder = tmp_path / "exp"
    (folder / "raw").mkdir(parents=True)
    log = write_log(folder / "raw" / "T.csv")
    store, _, _ = heating_series(folder / "s.zarr", (0.0, 0.5, 1.0, 1.0), size=48)
    zero = 1_710_410_290.0
    g = zarr.open_group(str(store), mode="r+")
    attrs = dict(g.attrs["flytomo"])
    attrs["scans"] = [{**s, **{k: s[k] + zero for k in ("start_time_s", "mid_time_s") if s.get(k) is not None}}
                      for s in attrs["scans"]]
    attrs["config"] = {"temperature_log": "raw/T.csv", "temperature_log_start": zero,
                       "config_file": str(folder / "experiment.yaml")}
    g.attrs["flytomo"] = attrs
    assert main(["analyze", str(store), "--out", str(tmp_path / "a")]) == 0
    a = pd.read_csv(tmp_path / "a" / "crack_table.csv")
    assert a["heating_rate_C_per_min"].round(1).tolist()[:2] == [150.0, 150.0]
    other = shutil.copy(log, tmp_path / "copy.csv")
    assert main(["analyze", str(store), "-T", str(other), "--out", str(tmp_path / "b")]) == 2
    assert "--log-start" in _err_line(capsys)
    assert main(["analyze", str(store), "-T", str(other), "--log-start", "2024-03-14T09:58:10Z",
                 "--out", str(tmp_path / "b")]) == 0
    pd.testing.assert_frame_equal(a[["temperature_C", "heating_rate_C_per_min"]],
                                  pd.read_csv(tmp_path / "b" / "crack_table.csv")[["temperature_C",
                                                                                    "heating_rate_C_per_min"]])
