"""A local run produces the experiment store of docs/architecture.md, and the analysis reads it."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import zarr

from hpc import engine
from hpc.config import load_experiment
from hpc.engine import run_experiment
from hpc.manifest import Manifest

from .conftest import ROWS, SCANS, SIZE, write_config


def test_local_run_writes_the_store(reference, sim):
    cfg, vol = reference
    store = cfg.parent / "store.zarr"
    assert vol.shape == (SCANS, SIZE, SIZE, SIZE) and vol.dtype == np.float32
    assert np.isfinite(vol).all() and vol.max() > 0
    g = zarr.open_group(str(store), mode="r")
    assert g["0"].chunks == (1, ROWS, SIZE, SIZE)
    ms = g.attrs["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["t", "z", "y", "x"] and ms["version"] == "0.4"
    # the scans' voxel size (21.6 nm, as FXI files record it) in the OME metadata, as a one-scan
    # volume of `flytomo recon` has it (was: unit-less 1)
    assert [a.get("unit") for a in ms["axes"]] == ["second", "nanometer", "nanometer", "nanometer"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"][1:] == [21.6, 21.6, 21.6]
    fly = g.attrs["flytomo"]
    starts = [s["start_time_s"] for s in fly["scans"]]  # evenly spaced: the time axis is their step
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"][0] == pytest.approx(starts[1] - starts[0])
    assert fly["status"] == "complete" and fly["method"] == "fbp"
    assert {"version", "options", "config", "scans", "command", "versions"} <= set(fly)
    assert len(fly["scans"]) == SCANS
    truth = np.loadtxt(sim.truth_table, delimiter=",", skiprows=1)
    for i, s in enumerate(fly["scans"]):
        assert s["index"] == i and s["status"] == "done" and s["file"].endswith(f"scan_{i:04d}.h5")
        assert s["duration_s"] == 6.0 and abs(s["mid_time_s"] - truth[i, 2]) < 1e-6
        assert abs(s["temperature_C"] - truth[i, 3]) < 2.0  # log noise ±0.3 °C
        assert s["geometry"]["n_columns"] == SIZE
    assert len(Manifest(store).done()) == SCANS * (SIZE // ROWS)
    log = (cfg.parent / "store_run.log").read_text()
    assert log.count("done in") == SCANS * (SIZE // ROWS)
    # each scan's axis said in the run log, their range in the summary (blind probe O: only in the attrs)
    centers = [s["geometry"]["center"] for s in fly["scans"]]
    for i, c in enumerate(centers):
        assert f"scan scan_{i:04d}.h5: rotation axis at column {c:.2f} (" in log


def test_store_is_readable_by_analysis(reference):
    from analysis.store import open_store

    cfg, _ = reference
    info = open_store(cfg.parent / "store.zarr")
    assert info.n_times == SCANS and info.volume_shape == (SIZE, SIZE, SIZE)


def test_rerun_does_nothing_and_reconstructor_built_once_per_geometry(reference, tmp_path, sim):
    cfg, vol = reference
    s = run_experiment(load_experiment(cfg), progress=False)
    assert (s.done, s.skipped, s.failed) == (0, SCANS * (SIZE // ROWS), 0)
    # a scan's axis is logged by the run that reconstructs it, not again by each later run (probe AB)
    assert (cfg.parent / "store_run.log").read_text().count("rotation axis at column") == SCANS
    # a fresh store in this process: every scan has the same geometry → one build for all units
    engine._reconstructors.clear()
    cfg2 = write_config(tmp_path, sim)
    s2 = run_experiment(load_experiment(cfg2), progress=False)
    assert s2.done == SCANS * (SIZE // ROWS) and engine.cache_info() == 1
    log = (tmp_path / "store_run.log").read_text()
    assert log.count("(build ") == s2.done  # one line per unit; the build count is cache_info() above
    import zarr as z
    np.testing.assert_array_equal(z.open_array(str(tmp_path / "store.zarr" / "0"), mode="r")[:], vol)


def test_summary_json_and_exit_code(tmp_path, sim):
    from hpc.cli import main

    cfg = write_config(tmp_path, sim)
    out = tmp_path / "summary.json"
    assert main(["run", str(cfg), "--no-progress", "--summary-json", str(out), "--threads", "2"]) == 0
    d = json.loads(out.read_text())["run"]
    assert d["done"] == SCANS * (SIZE // ROWS) and d["failed"] == 0 and d["slices_per_s"] > 0
    assert d["executor"] == "local (in-process, 2 torch thread(s))"  # --threads overrides the config's 1
    assert re.fullmatch(rf"columns? \d+\.\d\d( to \d+\.\d\d)? \(the middle, {SCANS} scans, each in the run log\)",
                        d["axis"]), d["axis"]


def test_a_run_logged_to_a_file_says_its_progress_in_lines(tmp_path, sim, monkeypatch, capsys):
    """Blind probe AE: a Slurm job's log said nothing between the start and the summary (the bar is
    off without a terminal), so an hours-long run could not be followed. Now a log gets a line as
    the run begins and one a minute (here every unit: PROGRESS_LINE_S 0) with the units done of
    all, the failed and an estimate of the time left; --no-progress keeps it quiet."""
    monkeypatch.setattr(engine, "PROGRESS_LINE_S", 0.0)
    cfg = write_config(tmp_path, sim)
    total = SCANS * (SIZE // ROWS)
    assert run_experiment(load_experiment(cfg), progress=True, analysis_follows=False).exit_code == 0
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("reconstruct: ")]
    assert lines[0] == f"reconstruct: {total} units, 0 already done"
    done = [int(m[1]) for l in lines[1:] if (m := re.fullmatch(
        rf"reconstruct: (\d+) of {total} units done \(\d+ %\), 0 failed, \d+ s so far, about \d+ s left", l))]
    assert done == list(range(1, total)), lines  # the last unit: the summary says it
    cfg2 = write_config(tmp_path / "quiet", sim)
    assert run_experiment(load_experiment(cfg2), progress=False, analysis_follows=False).exit_code == 0
    assert "reconstruct: " not in capsys.readouterr().err


def test_a_full_disk_that_names_no_file_is_said_with_the_store(tmp_path, sim, monkeypatch, capsys):
    """Blind probe AF: a full disk under zarr's or PIL's writes (their errors name no file) read
    "writing the output: No space left on device" without saying where: now the store and the
    analysis folder are named, one line, exit 2."""
    import errno

    from hpc.cli import main
    from hpc.commands import run as run_command

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_command, "execute", full)
    cfg = write_config(tmp_path, sim)
    assert main(["run", str(cfg), "--no-progress"]) == 2
    exp = load_experiment(cfg)
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"flytomo: error: writing {exp.store_path} or its analysis folder {exp.analysis_out}: No space left on "
        "device; make room and run the same command again")


def test_a_problem_every_scan_shares_is_one_line_and_a_count(tmp_path, sim):
    """A dead detector column in all 4 scans: one warning naming the first file, then
    '3 more file(s) likewise' (a 300-scan run printed 300 such lines, one per scan)."""
    import glob

    import h5py

    from .conftest import flytomo

    cfg = write_config(tmp_path, sim, copy_raw=True)
    for path in sorted(glob.glob(str(tmp_path / "raw" / "*.h5"))):
        with h5py.File(path, "r+") as f:
            f["img_bkg"][:, :, 5] = f["img_dark"][:, :, 5]
    r = flytomo("run", cfg, "--no-progress")
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if "dead detector pixels" in line]
    assert len(lines) == 2, r.stderr
    assert "scan_0000.h5: dead detector pixels" in lines[0]
    assert lines[1].startswith(f"flytomo: warning: {SCANS - 1} more file(s) likewise: dead detector pixels")
    # the run log names every one of them (a blind probe: 149 of 150 repaired scans were named nowhere)
    logged = [line for line in (tmp_path / "store_run.log").read_text().splitlines()
              if "WARNING" in line and "dead detector pixels" in line]
    assert sorted(re.search(r"(scan_\d+)\.h5", line).group(1) for line in logged) == [
        f"scan_{i:04d}" for i in range(SCANS)]


def test_once_per_message_collapses_a_problem_shared_by_files():
    from hpc.cli import _once_per_message

    shown = []
    once = _once_per_message(lambda message, *rest: shown.append(str(message)))
    for text in ("raw/a.h5: no flats", "raw/b.h5: no flats", "raw/a.h5: no flats", "raw/c.h5: no flats",
                 "raw/b.h5: projection(s) 4 look like dropped frames", "rows 0:8: not a file"):
        once(UserWarning(text), UserWarning, "x.py", 1)
    assert shown == ["raw/a.h5: no flats", "raw/b.h5: projection(s) 4 look like dropped frames",
                     "rows 0:8: not a file"]
    assert once.summary() == ["flytomo: warning: 2 more file(s) likewise: no flats"]


def test_once_per_message_counts_texts_that_differ_only_in_numbers_together():
    """A sample wider than the field in every scan: the pad note differs from scan to scan
    only in its numbers; the first is shown, the others counted, the numbers that differ
    written as … (those all share kept)."""
    from hpc.cli import _once_per_message

    shown = []
    once = _once_per_message(lambda message, *rest: shown.append(str(message)))
    for f, ratio, pad in (("a", 0.45, 23), ("b", 0.47, 23), ("c", 0.52, 25)):
        once(UserWarning(f"raw/{f}.h5: edges at {ratio:.2f} of the peak: continued {pad} columns past 2 edges"),
             UserWarning, "x.py", 1)
    assert shown == ["raw/a.h5: edges at 0.45 of the peak: continued 23 columns past 2 edges"]
    assert once.summary() == ["flytomo: warning: 2 more file(s) likewise: edges at … of the peak: "
                              "continued … columns past 2 edges"]


def test_once_per_message_knows_files_whose_names_have_spaces(tmp_path):
    """'raw data/scan 01.h5: no blur angle recorded ...' once per scan, 5 lines (a blind probe):
    a name with spaces is a file's where the file exists."""
    from hpc.cli import _once_per_message

    shown = []
    once = _once_per_message(lambda message, *rest: shown.append(str(message)))
    for i in range(3):
        f = tmp_path / f"scan {i:02d}.h5"
        f.write_bytes(b"")
        once(UserWarning(f"{f}: no blur angle recorded"), UserWarning, "x.py", 1)
    once(UserWarning("the scans chose pads: of 3 columns"), UserWarning, "x.py", 1)
    assert shown == [f"{tmp_path / 'scan 00.h5'}: no blur angle recorded", "the scans chose pads: of 3 columns"]
    assert once.summary() == ["flytomo: warning: 2 more file(s) likewise: no blur angle recorded"]


def test_scans_of_two_detector_sizes_are_named(tmp_path):
    from pathlib import Path

    import pytest

    from hpc.planner import ScanPlan, common_shape
    from recon.errors import FlytomoError

    plans = [ScanPlan(i, Path(f"raw/s{i}.h5"), f"s{i}", shape=(90, 8, 64 if i != 2 else 96)) for i in range(4)]
    with pytest.raises(FlytomoError, match=r"scans differ in detector size \(8×64 rows×columns: 3 scan\(s\), "
                                           r"e\.g\. s0\.h5; 8×96 rows×columns: 1 scan\(s\), e\.g\. s2\.h5\)"):
        common_shape(plans)


def test_units_are_not_reconstructed_where_they_cannot_be_written(tmp_path, sim):
    """Blind probe (session 41): on a full disk (or under a file-size limit) every remaining unit
    was reconstructed, then lost at its write. Now each asks for room first: all fail at once,
    'not reconstructed', the run exits 1 and the store is left to resume."""
    import resource
    import signal
    import subprocess
    import sys

    from .conftest import REPO

    cfg = write_config(tmp_path, sim)
    unit_bytes = ROWS * SIZE * SIZE * 4

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (unit_bytes // 2, resource.RLIM_INFINITY))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    r = subprocess.run([sys.executable, "-m", "hpc.cli", "run", str(cfg), "--no-progress", "--no-analysis"],
                       capture_output=True, text=True, preexec_fn=small_files, cwd=REPO, timeout=300)
    assert r.returncode == 1, r.stderr[-2000:]
    failed = Manifest(tmp_path / "store.zarr").failed()
    assert len(failed) == SCANS * (SIZE // ROWS), failed
    assert all("File too large (the file-size limit is" in why and "not reconstructed); make room" in why
               for why in failed.values()), failed
    assert not Manifest(tmp_path / "store.zarr").done()


def test_units_reuse_the_operators_of_the_reconstructor_that_judged_the_zoom():
    """A run's judged scans (zoom auto) built every operator once to judge the zoom and again for
    their units at the zoom chosen; the units' reconstructor now shares the judge's first stages and
    gives the bits of one built anew."""
    import warnings

    import torch

    from hpc.engine import reconstructor_for
    from recon.geometry import ScanGeometry
    from recon.methods import make_reconstructor
    from recon.operators import Projector

    g = ScanGeometry.create(np.arange(90) * 2.0, 96, blur_angle_deg=1.5)
    yy, xx = np.mgrid[:96, :96] - 47.5
    disk = 0.01 * (yy ** 2 + xx ** 2 < 30 ** 2)
    sino = Projector(g).forward(torch.from_numpy(disk)[None])[0].numpy()[None].astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        judge, _ = reconstructor_for(g.to_dict(), "rrdb", (("zoom", "auto"),), "cpu")
        units, _ = reconstructor_for(g.to_dict(), "rrdb", (("zoom", 1.5),), "cpu")
        assert units._stages is judge._stages and units.options["zoom"] == 1.5
        np.testing.assert_array_equal(units(sino), make_reconstructor(g, "rrdb", zoom=1.5)(sino))


def test_finished_scans_are_marked_in_few_writes_of_the_scan_list(tmp_path):
    """Each mark rewrites the whole scan list: 400 scans finished in a burst are written in a
    few writes, not 400 (probe AB: O(N²)), the first at once, and all by ``flush``."""
    from hpc import store as st
    from hpc.planner import WorkUnit

    n = 400
    path = tmp_path / "s.zarr"
    st.create_store(path, (n, 1, 4, 4), 1, {"scans": [{"index": t, "status": "pending", "file": f"f{t}.h5"}
                                                     for t in range(n)]})
    units = [WorkUnit(t, 0, 1) for t in range(n)]
    live = engine._ScanStatus(path, units, set())
    live.unit_done(units[0])
    assert live.writes == 1 and st.read_attrs(path)["scans"][0]["status"] == "done"
    for u in units[1:]:
        live.unit_done(u)
    assert live.writes < 20, live.writes
    live.flush()
    assert [s["status"] for s in st.read_attrs(path)["scans"]] == ["done"] * n
