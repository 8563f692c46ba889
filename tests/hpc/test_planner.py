"""Work units: exact counts, chunk alignment, names."""
from __future__ import annotations

import re

import pytest

from hpc.planner import WorkUnit, plan_units, row_ranges
from recon.errors import FlytomoError


@pytest.mark.parametrize("n_scans, n_rows, rpc, per_scan", [(5, 50, 16, 4), (3, 64, 16, 4), (2, 7, 16, 1),
                                                             (1, 1, 1, 1), (4, 33, 8, 5)])
def test_unit_counts(n_scans, n_rows, rpc, per_scan):
    units = plan_units(n_scans, n_rows, rpc)
    assert len(units) == n_scans * per_scan
    assert len({u.name for u in units}) == len(units)
    for t in range(n_scans):
        rows = [u for u in units if u.t == t]
        assert rows[0].z0 == 0 and rows[-1].z1 == n_rows
        assert all(a.z1 == b.z0 for a, b in zip(rows, rows[1:]))
        assert all(u.z0 % rpc == 0 and u.rows <= rpc for u in rows)


def test_subset_and_names():
    units = plan_units(10, 20, 16, scans=[7, 2, 2])
    assert [(u.t, u.z0, u.z1) for u in units] == [(2, 0, 16), (2, 16, 20), (7, 0, 16), (7, 16, 20)]
    assert WorkUnit(3, 16, 32).name == "t00003_z00016"


def test_bad_plan():
    with pytest.raises(FlytomoError):
        row_ranges(0, 16)
    with pytest.raises(FlytomoError):
        row_ranges(10, 0)


def test_a_glob_takes_numbers_as_numbers_and_time_order_is_checked(tmp_path):
    """scan_1, scan_2, scan_10 in that order (plain string order put scan_10 second); a list
    whose recorded start times go backwards gets one warning naming the two files."""
    import warnings

    import numpy as np

    from hpc.config import resolve_scans
    from hpc.planner import survey_scans
    from recon.io.fxi import write_fxi

    rng = np.random.default_rng(0)
    for k, t in ((1, 100.0), (2, 200.0), (10, 1000.0)):
        tomo = rng.poisson(900, (12, 4, 16)).astype(np.float32)
        write_fxi(tmp_path / f"scan_{k}.h5", tomo, np.full((2, 4, 16), 1000.0, np.float32),
                  np.zeros((2, 4, 16), np.float32), np.linspace(0, 180, 12, endpoint=False), scan_id=k,
                  scan_time=t)
    files, problems = resolve_scans("scan_*.h5", tmp_path)
    assert not problems and [f.name for f in files] == ["scan_1.h5", "scan_2.h5", "scan_10.h5"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        survey_scans(files, center="middle", pad_columns=0)
    with pytest.warns(UserWarning, match=r"scan_1\.h5 started 900 s before scan_10\.h5, which is listed ahead"):
        survey_scans([files[2], files[0], files[1]], center="middle", pad_columns=0)


def test_the_survey_asks_one_scan_whether_the_axis_leans(tmp_path):
    """Three scans of a cracked phantom about an axis leaning 2° (2.2 px over 64 rows): the
    survey finds each one's axis, and one tilt hint comes (the first scan's), not three."""
    import warnings

    import numpy as np

    from hpc.planner import survey_scans
    from recon.io.dxchange import write_dxchange
    from recon.io.preprocess import DataHintWarning
    from recon.phantoms import make_phantom
    from recon.simulate import simulate_flyscan

    angles = np.arange(90) * 2.0
    scan = simulate_flyscan(make_phantom("cracked", 64, ndim=3, seed=2), angles, 2.0, 5000, seed=1,
                            center=33.0, tilt_deg=2.0)
    files = [write_dxchange(tmp_path / f"scan_{i}.h5", scan.tomo, scan.flats, scan.darks, angles) for i in range(3)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plans = survey_scans(files, center="auto")
    assert all(p.error is None and abs(p.geometry.center - 33.0) < 1.0 for p in plans)
    hints = [str(w.message) for w in caught if issubclass(w.category, DataHintWarning) and "--correct-tilt" in str(w.message)]
    assert len(hints) == 1 and "scan_0.h5" in hints[0], hints


def test_the_scans_of_an_experiment_are_padded_alike(tmp_path):
    """Two scans of samples reaching past a 64-px field by different amounts (auto pads 7 and
    14) and one inside it (0): every scan gets 14, with one note; a resumed run keeps the pads
    of its store (10 here) and gives scans new to it the same."""
    import warnings

    import numpy as np

    from hpc.planner import survey_scans
    from recon.io.dxchange import write_dxchange
    from recon.phantoms import make_phantom
    from recon.simulate import simulate_flyscan

    angles = np.arange(120) * 1.5
    files = []
    for i, (family, seed) in enumerate((("heterogeneous", 4), ("heterogeneous", 6), ("cracked", 6))):
        vol = make_phantom(family, 96, ndim=3, seed=seed)[44:52]
        s = simulate_flyscan(vol, angles, 1.5, 2000, seed=1)
        files.append(write_dxchange(tmp_path / f"scan_{i}.h5", s.tomo[..., 16:80], s.flats[..., 16:80],
                                    s.darks[..., 16:80], angles))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plans = survey_scans(files, center="auto")
    assert [p.geometry.pad_columns for p in plans] == [14, 14, 14]
    notes = [str(w.message) for w in caught if "padded by 14" in str(w.message)]
    assert len(notes) == 1 and "pads of 0-14 columns" in notes[0], notes
    stored = plans[0].geometry.with_pad(10).to_dict()
    resumed = survey_scans(files, center="auto", known=[{"index": 0, "file": "scan_0.h5", "geometry": stored}])
    assert [p.geometry.pad_columns for p in resumed] == [10, 10, 10]
    assert [p.geometry.pad_columns for p in survey_scans(files, center="auto", pad_columns=5)] == [5, 5, 5]


def test_two_scans_of_one_name_keep_their_own_geometry_on_resume(tmp_path):
    """Scans A/tomo.h5 and B/tomo.h5 with their axes 3 px apart: a resumed survey gives each the
    center its own store entry holds (entries were once looked up by file name: both got B's)."""
    import numpy as np

    from hpc.planner import survey_scans
    from recon.io.dxchange import write_dxchange
    from recon.phantoms import make_phantom
    from recon.simulate import simulate_flyscan

    angles = np.arange(90) * 2.0
    vol = make_phantom("heterogeneous", 64, ndim=3, seed=4)[28:36]
    files = []
    for folder, shift in (("A", 0.0), ("B", 3.0)):
        s = simulate_flyscan(vol, angles, 1.5, 20000, seed=1, center=31.5 + shift)
        (tmp_path / folder).mkdir()
        files.append(write_dxchange(tmp_path / folder / "tomo.h5", s.tomo, s.flats, s.darks, angles))
    first = survey_scans(files, center="auto")
    assert first[1].geometry.center - first[0].geometry.center == pytest.approx(3.0, abs=0.3)
    known = [p.to_attrs(tmp_path) for p in first]
    for entry, c in zip(known, (20.25, 40.75)):  # what a store would hold (made distinct here)
        entry["geometry"]["center"] = c
    resumed = survey_scans(files, center="auto", known=known)
    assert [p.geometry.center for p in resumed] == [20.25, 40.75]
    assert [p.scan_id for p in resumed] == ["A/tomo", "B/tomo"]  # told apart in tables and plots


def test_scan_durations_come_from_the_files_else_are_assumed_with_a_warning(tmp_path):
    """A fly-scan of 6 s every 108 s: the duration is read where a file records it (a
    duration, an end time as NXtomo's ``end_time``, or the turn over the rotation speed); a
    scan that records none is taken to last until the next starts, which reads its temperature
    51 s late on a ramp: that is now said (it was silent: +42.5 °C on a 50 °C/min ramp)."""
    import h5py
    import numpy as np

    from hpc.planner import survey_scans
    from recon.io.dxchange import write_dxchange
    from recon.io.nxtomo import write_nxtomo

    rng = np.random.default_rng(0)
    angles = np.linspace(0, 180, 12, endpoint=False)

    def scan(path, writer, t, **attrs):
        writer(path, rng.poisson(900, (12, 4, 16)).astype(np.float32), np.full((2, 4, 16), 1000.0, np.float32),
               np.zeros((2, 4, 16), np.float32), angles, scan_time=t)
        with h5py.File(path, "a") as f:
            for k, v in attrs.items():
                (f["entry"] if "entry" in f else f).attrs[k] = v
        return path

    log = (np.array([0.0, 1000.0]), np.array([20.0, 1020.0]))
    files = [scan(tmp_path / "a.h5", write_dxchange, 0.0, scan_duration_s=6.0),
             scan(tmp_path / "b.h5", write_nxtomo, 108.0, end_time="1970-01-01T00:01:54Z"),
             scan(tmp_path / "c.h5", write_dxchange, 216.0, rotation_speed_deg_s=30.0)]
    plans = survey_scans(files, center="middle", pad_columns=0, log=log)
    assert [p.duration_s for p in plans] == pytest.approx([6.0, 6.0, 6.0])
    assert [p.temperature_C for p in plans] == pytest.approx([23.0, 131.0, 239.0])
    files.append(scan(tmp_path / "d.h5", write_dxchange, 324.0))
    with pytest.warns(UserWarning, match=r"1 of 4 scans record no duration: each is taken to last the median "
                                         r"spacing of the starts \(108 s.*read 54 s after its start; set scan_duration_s"):
        plans = survey_scans(files, center="middle", pad_columns=0, log=log)
    assert plans[-1].duration_s == 108.0
    assert survey_scans(files, center="middle", pad_columns=0, log=log, scan_duration_s=6.0)[-1].duration_s == 6.0
    # a duration longer than the gap to the next scan (milliseconds written as seconds): said;
    # the config's scan_duration_s is the user's word, over the file's
    files[0] = scan(tmp_path / "a.h5", write_dxchange, 0.0, scan_duration_s=6000.0)
    with pytest.warns(UserWarning, match=r"a\.h5 records a duration of 6000 s, longer than the 108 s to the start "
                                         r"of b\.h5: .* a duration in other units \(ms\)\?"):
        survey_scans(files, center="middle", pad_columns=0, log=log)
    plans = survey_scans(files, center="middle", pad_columns=0, log=log, scan_duration_s=6.0)
    assert [p.duration_s for p in plans] == [6.0] * 4
    # the config's own number too long: named as the config's, not as the files' (probe W)
    with pytest.warns(UserWarning, match=r"the config's scan_duration_s: 5000 s is longer than the 108 s from the "
                                         r"start of a\.h5 to that of b\.h5 \(3 such scans\): .*set it to the seconds"):
        survey_scans(files, center="middle", pad_columns=0, scan_duration_s=5000.0, log=log)


def test_a_lone_scan_without_a_duration_is_said_to_be_read_at_its_start(tmp_path):
    """Blind probe N: one scan recording a start and no duration was placed on the log at its start
    without a word (two such scans get the spacing, and a warning). Now said, with the fix."""
    from pathlib import Path

    from hpc.planner import ScanPlan, _fill_durations
    from recon.io.metadata import AssumptionWarning

    lone = [ScanPlan(0, Path("scan_1.h5"), "1", start_time_s=100.0)]
    with pytest.warns(AssumptionWarning, match=r"scan_1\.h5 records no duration and there is no other scan to take "
                                               r"one from: its temperature is read at its start; set scan_duration_s"):
        _fill_durations(lone, warn=True)
    assert lone[0].duration_s is None and lone[0].mid_time_s == 100.0


def test_start_times_without_a_zone_meet_a_zoned_log_with_a_warning_and_timezone_reads_them(tmp_path):
    """Blind probe R: scan files whose start is a date-time without a zone (the beamline's local
    clock, CET) and a furnace log with its +01:00: every scan was read an hour off (25 °C where
    the furnace was at 40-625 °C), without a word. Now the mix is said, naming timezone:, and
    ``timezone`` (an offset or a region, summer time included) re-reads the scans' clock."""
    import h5py
    import numpy as np

    from hpc.config import TemperatureLog
    from hpc.engine import log_problems
    from hpc.planner import survey_scans
    from recon.io.fxi import write_fxi

    rng = np.random.default_rng(0)
    angles = np.linspace(0, 180, 12, endpoint=False)
    files = []
    for i, local in enumerate(("2026-03-04 13:05:07", "2026-03-04 13:07:07")):  # CET: 12:05:07 UTC
        path = tmp_path / f"scan_{i}.h5"
        write_fxi(path, rng.poisson(900, (12, 4, 16)).astype(np.float32), np.full((2, 4, 16), 1000.0, np.float32),
                  np.zeros((2, 4, 16), np.float32), angles)
        with h5py.File(path, "a") as f:
            del f["scan_time"]
            f["scan_time"] = local.encode()
            f.attrs["scan_duration_s"] = 30.0
        files.append(path)
    utc0 = 1772625907.0  # 2026-03-04 12:05:07 UTC
    log = TemperatureLog(np.array([utc0 - 7200, utc0 + 7200]), np.array([0.0, 14400.0]))  # 1 °C/s, zoned
    plans = survey_scans(files, center="middle", pad_columns=0, log=log)
    assert all(p.start_time_naive for p in plans)
    assert [p.temperature_C for p in plans] == pytest.approx([10815.0, 10935.0])  # an hour late: read as UTC
    _, lines = log_problems(plans, log, False, "furnace.csv")
    assert len(lines) == 1 and re.search(r"scan_0\.h5 \(\+1 more\): the scans' start times are date-times without "
                                         r"a time zone, read as UTC, while the times of the log furnace\.csv carry "
                                         r"their zone .* set timezone:", lines[0]), lines
    for zone in ("+01:00", "Europe/Berlin"):
        plans = survey_scans(files, center="middle", pad_columns=0, log=log, timezone=zone)
        assert [p.temperature_C for p in plans] == pytest.approx([7215.0, 7335.0])  # mid-scan, on time
        assert not any(p.start_time_naive for p in plans) and log_problems(plans, log, False)[1] == []
    naive_log = TemperatureLog(log.time_s, log.temperature_C, naive=True)  # both without a zone: one clock
    assert log_problems(survey_scans(files, center="middle", pad_columns=0, log=naive_log), naive_log, False)[1] == []


def test_scans_without_times_whose_names_count_them_out_of_list_order_get_a_warning(tmp_path):
    """Blind probe R: files cathode_<T>C_<seq>.h5 that record no time were taken in natural name
    order, by the temperature in their names, so the table's history zig-zagged without a word.
    Where the names hold a number that counts the scans and the list does not follow it, a
    warning says so; a list that does, or names with one number, get none."""
    import warnings

    import h5py
    import numpy as np

    from hpc.config import resolve_scans
    from hpc.planner import survey_scans
    from recon.io.fxi import write_fxi

    rng = np.random.default_rng(0)
    angles = np.linspace(0, 180, 12, endpoint=False)
    for seq, temp in enumerate((40, 160, 280, 400, 520, 458), start=1):
        path = tmp_path / f"cathode_{temp}C_{seq:04d}.h5"
        write_fxi(path, rng.poisson(900, (12, 4, 16)).astype(np.float32), np.full((2, 4, 16), 1000.0, np.float32),
                  np.zeros((2, 4, 16), np.float32), angles)
        with h5py.File(path, "a") as f:
            del f["scan_time"]
    files, _ = resolve_scans("cathode_*.h5", tmp_path)
    assert [f.name[-7:-3] for f in files] == ["0001", "0002", "0003", "0004", "0006", "0005"]  # 458 before 520
    with pytest.warns(UserWarning, match=r"the scans record no times, so they are taken in the list's order .* the "
                                         r"number that counts them \(number 2 of their names: cathode_40C_0001\.h5\) "
                                         r"runs 1, 2, 3, 4, 6, 5: if it is the order they were taken in"):
        survey_scans(files, center="middle", pad_columns=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        survey_scans(sorted(files, key=lambda f: f.name[-7:]), center="middle", pad_columns=0)


def test_a_given_center_far_from_a_new_scans_own_axis_gets_a_hint(sim):
    """Blind probe V: `center: 45.5` (the first scan's axis) given for a series whose axis drifted
    0.8 px a scan: crack fractions off by up to 1.4 points, pores that are not there, no word. Each
    scan new to the store is asked where its own projections put the axis: more than 1 px from
    the given column, a hint (once per kind: the command line folds the others). The simulated
    axis is the detector's middle column."""
    import warnings

    from hpc.planner import survey_scans
    from recon.io.preprocess import DataHintWarning

    middle = (sim.settings.size - 1) / 2
    with pytest.warns(DataHintWarning, match=rf"scan_0000\.h5: center {middle + 3:g} is given, but this scan's "
                                             rf"projections put the rotation axis at column {middle - 0.5:.0f}\.\d\d "
                                             r"\(-3\.\d px\): an axis that drifts"):
        survey_scans(sim.scans[:2], center=middle + 3, pad_columns=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plans = survey_scans(sim.scans[:2], center=middle + 0.3, pad_columns=0)
        known = [p.to_attrs() for p in plans]
        survey_scans(sim.scans[:2], center=middle + 3, pad_columns=0, known=known)  # a resumed store: not asked again
    assert not [w for w in caught if "is given, but" in str(w.message)]


def test_a_scan_outside_the_log_because_its_time_has_no_zone_says_so():
    """Blind probe V: one scan's start written as a naive local date-time, the others and the log
    in Unix seconds: the run stopped on "outside the temperature log ... is the log in local
    time?", blaming the log, and the clock warning that named the scan never came. The line names
    the scan's zoneless start, and the clock warning comes first."""
    from pathlib import Path

    from hpc.config import TemperatureLog
    from hpc.engine import log_problems
    from hpc.planner import ScanPlan

    import numpy as np

    t0 = 1_700_000_000.0
    log = TemperatureLog(np.array([t0, t0 + 1000]), np.array([20.0, 1020.0]), naive=False)
    plans = [ScanPlan(0, Path("scan_00.h5"), "scan_00", start_time_s=t0 + 10, duration_s=20),
             ScanPlan(1, Path("scan_01.h5"), "scan_01", start_time_s=t0 + 7200 + 100, duration_s=20,
                      start_time_naive=True)]
    unusable, to_warn = log_problems(plans, log, extrapolate=False)
    assert unusable is not None and "scan_01.h5's start is a date-time without a zone, read as UTC" in unusable
    assert to_warn and "scan_01.h5" in to_warn[0], to_warn


def test_a_scan_that_cannot_be_opened_keeps_the_start_its_file_records(tmp_path):
    """Blind probe AG: a scan cut short (fewer frames than angles) failed, and its row had no
    time, so the plot said "without a recorded time" of a file that records one. Its start is now
    read apart from its frames, in each format, and a file that is no scan at all still has none."""
    import h5py
    import numpy as np

    from hpc.planner import survey_scans
    from recon.io.dxchange import write_dxchange
    from recon.io.fxi import write_fxi
    from recon.io.nxtomo import write_nxtomo

    rng = np.random.default_rng(0)
    angles = np.linspace(0, 180, 12, endpoint=False)
    files = []
    for i, writer in enumerate((write_fxi, write_dxchange, write_nxtomo)):
        path = writer(tmp_path / f"s{i}.h5", rng.poisson(900, (12, 4, 16)).astype(np.float32),
                      np.full((2, 4, 16), 1000.0, np.float32), np.zeros((2, 4, 16), np.float32), angles,
                      scan_time=1.7e9 + 100 * i)
        files.append(path)
    with h5py.File(files[0], "a") as f:  # FXI: the last 7 frames never written
        data = f["img_tomo"][:5]
        del f["img_tomo"]
        f["img_tomo"] = data
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    plans = survey_scans([*files, tmp_path / "junk.h5"], center="middle", pad_columns=0)
    assert plans[0].error and plans[0].start_time_s == 1.7e9, plans[0].error
    assert [p.start_time_s for p in plans[1:3]] == [1.7e9 + 100, 1.7e9 + 200]
    assert plans[3].error and plans[3].start_time_s is None
