"""Temperature join and the crack table."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from analysis.table import (COLUMNS, build_table, clock_origin, clock_zone_warning, outside_log_text, read_temperature_log,
                            scan_temperatures, write_table)
from recon.errors import FlytomoError

from .conftest import write_log


def _scans(n=4, start=30.0, spacing=60.0, duration=10.0):
    return [{"index": i, "scan_id": 100 + i, "start_time_s": start + i * spacing,
             "mid_time_s": start + i * spacing + duration / 2, "duration_s": duration} for i in range(n)]


def test_interpolated_temperature_and_rate(tmp_path):
    log = read_temperature_log(write_log(tmp_path / "log.csv", ramp_end=200.0))
    df = scan_temperatures(_scans(5), log, "log.csv")
    # mid times 35, 95, 155, 215, 275 s; ramp 25 -> 525 °C over 200 s = 150 °C/min
    np.testing.assert_allclose(df["temperature_C"], [112.5, 262.5, 412.5, 525.0, 525.0])
    np.testing.assert_allclose(df["heating_rate_C_per_min"], [150, 150, 150, 0, 0])
    # what each 10-s scan went through (blind probe AG: a long scan on a ramp gave only its middle)
    np.testing.assert_allclose(df["temperature_min_C"], [100, 250, 400, 525, 525])
    np.testing.assert_allclose(df["temperature_max_C"], [125, 275, 425, 525, 525])


def test_rate_is_smoothed_over_a_scan(tmp_path):
    # a noisy log (sampled every 0.5 s) on a 60 °C/min ramp: the rate averaged over a 10 s scan
    t = np.arange(0, 400, 0.5)
    temp = 20 + t + np.random.default_rng(0).normal(0, 0.5, t.size)
    pd.DataFrame({"time_s": t, "temperature_C": temp}).to_csv(tmp_path / "log.csv", index=False)
    df = scan_temperatures(_scans(5), read_temperature_log(tmp_path / "log.csv"))
    assert np.all(np.abs(df["heating_rate_C_per_min"] - 60) < 10)


def test_log_not_covering_a_scan_names_log_and_scan(tmp_path):
    path = write_log(tmp_path / "short.csv", t_end=150.0)
    log = read_temperature_log(path)
    with pytest.raises(FlytomoError) as err:
        scan_temperatures(_scans(4), log, path)
    msg = str(err.value)
    assert "short.csv" in msg and "scan 102" in msg and "\n" not in msg
    # a log that starts after the first scan
    late = read_temperature_log(write_log(tmp_path / "late.csv", t0=32.0))
    with pytest.raises(FlytomoError, match="scan 100"):
        scan_temperatures(_scans(2), late, tmp_path / "late.csv")
    # extrapolate: the last reading is held
    with pytest.warns(UserWarning, match=r"short.csv: 2 scan\(s\) outside the log \(102, 103\) take its first or last"):
        df = scan_temperatures(_scans(4), log, path, extrapolate=True)
    assert df["temperature_C"].iloc[-1] == pytest.approx(log["temperature_C"].iloc[-1])
    assert np.isfinite(df["heating_rate_C_per_min"]).all()
    # the table says which rows hold the log's end value (they were 'log' rows like the others)
    assert list(df["temperature_from"]) == ["log", "log", "log end (extrapolated)", "log end (extrapolated)"]
    # ... but not a log no scan falls into: every temperature would be made up
    later = read_temperature_log(write_log(tmp_path / "later.csv", t0=10_000.0, t_end=10_600.0))
    with pytest.raises(FlytomoError, match=r"later\.csv: no scan falls inside the temperature log"):
        scan_temperatures(_scans(4), later, tmp_path / "later.csv", extrapolate=True)


def test_a_lone_scan_without_a_duration_starting_with_the_log_is_inside_it(tmp_path):
    """Blind probe M: one scan, started at the log's first reading, no duration recorded (and no
    spacing to take one from): its window was half a log step before its start, outside the log,
    and the analysis of a 1-scan series failed. The window begins at the start."""
    log = read_temperature_log(write_log(tmp_path / "log.csv"))
    lone = [{"index": 0, "scan_id": 1, "start_time_s": float(log["time_s"].iloc[0]), "mid_time_s": None,
             "duration_s": None}]
    df = scan_temperatures(lone, log, "log.csv")
    assert df["temperature_C"].iloc[0] == pytest.approx(log["temperature_C"].iloc[0])
    assert np.isfinite(df["heating_rate_C_per_min"]).all()


def test_a_log_on_another_clock_is_named_as_such(tmp_path):
    """Scans that record dates, a log that counts from its own start: the message gives the
    scans' times as dates and says the clocks differ (not 'extrapolate')."""
    path = write_log(tmp_path / "log.csv", t_end=600.0)
    with pytest.raises(FlytomoError) as err:
        scan_temperatures(_scans(2, start=1_700_000_000.0), read_temperature_log(path), path)
    msg = str(err.value)
    assert "2023-11-14 22:13:20..22:13:30 UTC" in msg and "0..600 s" in msg
    assert "the scans record Unix times (dates), the log's time_s does not" in msg
    assert "temperature_log_start: in the experiment config, flytomo analyze --log-start" in msg
    same = outside_log_text("s1", 700.0, 710.0, 0.0, 600.0)
    assert same == "scan s1 runs 700..710 s, outside the temperature log (0..600 s)"


def test_a_log_counting_from_its_own_start_is_given_that_start(tmp_path):
    """Session 46's note: a controller's log in seconds from its own 0 could not meet scans that
    record dates but by rewriting its column. ``start`` puts its 0 on the scans' clock."""
    path = write_log(tmp_path / "log.csv", t_end=600.0)  # 25 -> 525 °C over 200 s, then held
    scans = _scans(2, start=1_700_000_030.0)  # 30 s and 90 s into the log: mid-scan 35 s, 95 s
    for start in (1_700_000_000.0, "2023-11-14 22:13:20", "2023-11-14T23:13:20+01:00"):
        log = read_temperature_log(path, start=start)
        df = scan_temperatures(scans, log, path)
        assert df["temperature_C"].tolist() == pytest.approx([25.0 + 35 * 2.5, 25.0 + 95 * 2.5])
        assert log.attrs["naive_times"] == (start == "2023-11-14 22:13:20")
    # a naive start on the experiment's clock
    assert read_temperature_log(path, "+01:00", "2023-11-14 23:13:20")["time_s"].iloc[0] == 1_700_000_000.0
    with pytest.raises(FlytomoError, match=r"log\.csv: log_start 'soon' is not a date-time"):
        read_temperature_log(path, start="soon")
    dated = write_log(tmp_path / "dated.csv", t0=1_700_000_000.0, t_end=1_700_000_600.0)
    with pytest.raises(FlytomoError, match=r"dated\.csv: log_start 1700000000 is given, but the log's time_s column "
                                           "holds dates or Unix times already"):
        read_temperature_log(dated, start=1_700_000_000)


def test_clock_origin():
    assert clock_origin(np.array([30.0, 90.0, np.nan])) == (0.0, "")
    assert clock_origin(np.array([np.nan, 1_700_000_060.0, 1_700_000_000.0])) == (
        1_700_000_000.0, "2023-11-14 22:13:20 UTC")
    assert clock_origin(np.array([np.nan])) == (0.0, "")
    # on the experiment's clock where it names one (blind probe AG: UTC beside a New York notebook)
    assert clock_origin(np.array([1710424690.0]), "America/New_York") == (1710424690.0, "2024-03-14 09:58:10 EDT")
    assert clock_origin(np.array([1710424690.0]), "+01:00")[1] == "2024-03-14 14:58:10 UTC+01:00"


def test_temperature_from_metadata_without_log():
    scans = _scans(3)
    for s, T in zip(scans, (20.0, 80.0, 140.0)):
        s["temperature_C"] = T
    df = scan_temperatures(scans)
    np.testing.assert_allclose(df["temperature_C"], [20, 80, 140])
    np.testing.assert_allclose(df["heating_rate_C_per_min"], [60, 60, 60])
    assert set(df["temperature_from"]) == {"scan file"}
    scans = _scans(2)  # no temperatures anywhere: NaN, not an error
    assert scan_temperatures(scans)["temperature_C"].isna().all()
    assert set(scan_temperatures(scans)["temperature_from"]) == {""}


def test_scans_that_share_a_start_time_are_not_placed_on_the_log(tmp_path):
    """A beamline that writes the experiment's start into every file: every scan got the first
    temperature and a rate of 0, silently (were: all rows 400 °C in the probe's experiment)."""
    path = write_log(tmp_path / "log.csv")
    scans = _scans(3)
    for s in scans:
        s["start_time_s"], s["mid_time_s"] = 30.0, 35.0
    with pytest.raises(FlytomoError, match=r"log\.csv: 3 scans record a start time another scan records too "
                                           r"\(e\.g\. 100 and 101\).*temperature_log: null") as err:
        scan_temperatures(scans, read_temperature_log(path), path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text, match", [
    ("t,temp\n0,1\n1,2\n", "lacks column"),
    # one column: named whole (blind probe AD: 'found t, mp, ratur, _C', split on the letter e)
    ("temperature_C\n25\n30\n", r"lacks column\(s\) time_s; found temperature_C \("),
    ("time_s,temperature_C\n0,20\n1,abc\n", "line 3"),
    ("time_s,temperature_C\n0,20\n", "at least two"),
    ("time_s,temperature_C\n", r"has a header \(time_s, temperature_C\) and no readings"),  # was an IndexError
    ("time,temperature_C\n09:00:00,20\n09:01:00,30\n", r"times of day without a date \('09:00:00'\)"),
    ("Date,Time,Temp (°C)\n2024-05-13,01:35:00 CEST,25\n2024-05-13,01:36:00 CEST,30\n",
     r"the Time column's times carry a zone by name \('CEST'\), which flytomo does not guess"),
])
def test_bad_logs(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(FlytomoError, match=match) as err:
        read_temperature_log(p)
    assert "bad.csv" in str(err.value)
    with pytest.raises(FlytomoError, match="no such temperature log"):
        read_temperature_log(tmp_path / "missing.csv")
    with pytest.raises(FlytomoError, match="is a folder"):
        read_temperature_log(tmp_path)
    (tmp_path / "cp1252.csv").write_bytes("time_s;Temperature (°C)\n0;25,5\n60;30\n".encode("cp1252"))
    assert read_temperature_log(tmp_path / "cp1252.csv")["temperature_C"].tolist() == [25.5, 30.0]


@pytest.mark.parametrize("text, times, temps", [
    ("time_s,temperature_C\n0,25\n60,75\n", [0, 60], [25, 75]),
    ("# furnace export\nTime (min);Temperature (°C)\n0;25\n1;75\n", [0, 60], [25, 75]),
    ("Elapsed [s]\tT [K]\n0\t298.15\n60\t348.15\n", [0, 60], [25, 75]),
    ("time_s temperature_C\n0   25\n60 75\n", [0, 60], [25, 75]),  # blanks between the columns
    ("timestamp,temp\n2026-12-01T10:00:00,25\n2026-12-01T10:01:00Z,75\n", [1796119200, 1796119260], [25, 75]),
    ("Time,Temperature_K\n2026-12-01 11:00:00+01:00,298.15\n2026-12-01 11:01:00+01:00,348.15\n",
     [1796119200, 1796119260], [25, 75]),
    # spreadsheets: a UTF-8 BOM (Excel's "CSV UTF-8"), decimal commas with semicolons, CRLF
    ("\ufefftime,temperature_C\r\n0,25\r\n60,75\r\n", [0, 60], [25, 75]),
    ("time_s;temperature_C\n0;25,5\n60,5;75,25\n", [0, 60.5], [25.5, 75.25]),
    # day-first dates, as European instruments write them: one order for the whole column
    ("time,temperature_C\n02/05/2024 09:00:00,25\n13/05/2024 09:00:00,75\n", [1714640400, 1715590800], [25, 75]),
    ("time,temperature_C\n02.05.2024 09:00,25\n13.05.2024 09:00,75\n", [1714640400, 1715590800], [25, 75]),
    ("time,temperature_C\n05/02/2024 09:00:00,25\n05/13/2024 09:00:00,75\n", [1714640400, 1715590800], [25, 75]),
    # Unix milliseconds, as many loggers write them
    ("timestamp,temp\n1796119200000,25\n1796119260500,75\n", [1796119200, 1796119260.5], [25, 75]),
    ("timestamp,temp\n1796119200000000000,25\n1796119260500000000,75\n", [1796119200, 1796119260.5], [25, 75]),
    ("timestamp_ms,temperature_C\n0,25\n60500,75\n", [0, 60.5], [25, 75]),  # the unit as a suffix (was refused)
    ("time_min,T_K\n0,298.15\n1.5,348.15\n", [0, 90], [25, 75]),
    # furnace exports the probe met (each was refused): a unit after '/', 'Elapsed Time', the sample's
    # thermocouple beside a setpoint, the first of two thermocouples, 'Date/Time'
    ("Elapsed Time [s],Temperature/K\n0,298.15\n60,348.15\n", [0, 60], [25, 75]),
    ("time/min,Setpoint (°C),Sample T (°C)\n0,500,25\n1,500,75\n", [0, 60], [25, 75]),
    ("time_s,TC1 (°C),TC2 (°C)\n0,25,30\n60,75,80\n", [0, 60], [25, 75]),
    ("Date/Time,temp\n2026-12-01T10:00:00Z,25\n2026-12-01T10:01:00Z,75\n", [1796119200, 1796119260], [25, 75]),
    # the date and the time of day in two columns, as furnace controllers write them (was refused: times of day)
    ("Date,Time,Temperature (°C)\n2026-12-01,10:00:00+00:00,25\n2026-12-01,10:01:00+00:00,75\n",
     [1796119200, 1796119260], [25, 75]),
    ("Date;Time;Sample T (°C)\n13.05.2024;09:00;25\n13.05.2024;23:59:30;75\n", [1715590800, 1715644770], [25, 75]),
    ("Date,Time,Temp (°C)\n05/13/2024,11:35:00 PM,25\n05/14/2024,12:05:00 AM,75\n", [1715643300, 1715645100], [25, 75]),
])
def test_logs_as_instruments_write_them(tmp_path, text, times, temps):
    """Other delimiters, usual column names with units in brackets, minutes, kelvin and
    ISO date-times (naive = UTC, as in the scan files) all read as seconds and °C."""
    p = tmp_path / "log.csv"
    p.write_bytes(text.encode("utf-8"))
    df = read_temperature_log(p)
    np.testing.assert_allclose(df["time_s"], times)
    np.testing.assert_allclose(df["temperature_C"], temps, atol=1e-9)


def test_a_failed_scan_outside_the_log_gets_no_temperature_and_stops_nothing(tmp_path):
    """A scan not reconstructed now keeps the time its file records (blind probe AG); one past the
    log's end gets an empty temperature, where a scan done there stops the analysis."""
    log = read_temperature_log(write_log(tmp_path / "log.csv", t_end=600.0))
    scans = _scans(3) + [{"index": 3, "scan_id": 103, "start_time_s": 5000.0, "mid_time_s": 5005.0,
                          "duration_s": 10.0, "status": "failed"}]
    df = scan_temperatures(scans, log, "log.csv")
    assert np.isfinite(df["temperature_C"][:3]).all() and np.isnan(df["temperature_C"][3])
    assert df["temperature_from"][3] == "" and np.isnan(df["temperature_max_C"][3])
    scans[3]["status"] = "done"
    with pytest.raises(FlytomoError, match="103"):
        scan_temperatures(scans, log, "log.csv")


def test_table_rows_and_files(tmp_path):
    times = scan_temperatures(_scans(3), read_temperature_log(write_log(tmp_path / "log.csv")))
    results = [
        {"t": 0, "scan_index": 0, "status": "ok", "particle_volume_vox": 1000, "crack_volume_vox": 10,
         "pore_volume_vox": 5, "crack_fraction": 0.01, "pore_fraction": 0.005, "n_cracks": 1, "n_pores": 1},
        {"t": 2, "scan_index": 2, "status": "ok", "particle_volume_vox": 1000, "crack_volume_vox": 30,
         "pore_volume_vox": 5, "crack_fraction": 0.03, "pore_fraction": 0.005, "n_cracks": 2, "n_pores": 1,
         "slice": {"image": np.zeros((2, 2))}},
        {"t": 1, "scan_index": 1, "status": "no particle found", "particle_volume_vox": 0,
         "crack_volume_vox": 0, "pore_volume_vox": 0, "crack_fraction": float("nan"),
         "pore_fraction": float("nan"), "n_cracks": 0, "n_pores": 0},
    ]
    df = build_table(times, results)
    assert list(df.columns) == COLUMNS
    assert list(df["scan_index"]) == [0, 1, 2]
    # experiment-clock times: elapsed_min is mid_time_s in minutes; Unix times count from the first start
    np.testing.assert_allclose(df["elapsed_min"], df["mid_time_s"] / 60)
    unix = build_table(times.assign(start_time_s=times["start_time_s"] + 1.7e9,
                                    mid_time_s=times["mid_time_s"] + 1.7e9), results)
    np.testing.assert_allclose(unix["elapsed_min"], (times["mid_time_s"] - times["start_time_s"].min()) / 60)
    assert list(df["status"]) == ["ok", "no particle found", "ok"]
    csv, pq = write_table(df, tmp_path / "out")
    back_csv = pd.read_csv(csv)
    back_pq = pd.read_parquet(pq)
    assert list(back_csv.columns) == COLUMNS and list(back_pq.columns) == COLUMNS
    np.testing.assert_allclose(back_pq["crack_fraction"], df["crack_fraction"])
    for back in (back_csv, back_pq):  # a row without a measurement holds blanks, not zeros (probe AE)
        counts = ["particle_volume_vox", "crack_volume_vox", "n_cracks", "n_pores", "other_particles"]
        assert back.loc[1, counts].isna().all()
        assert back["n_cracks"].tolist()[::2] == [1, 2] and back["particle_volume_vox"].tolist()[::2] == [1000, 1000]
    np.testing.assert_allclose(back_csv["crack_fraction"], df["crack_fraction"], rtol=1e-7)
    # Unix times stay exact to the millisecond in the CSV (8 digits would round them to 100 s)
    unix = df.assign(start_time_s=df["start_time_s"] + 1_709_308_837.25)
    csv, _ = write_table(unix, tmp_path / "unix")
    np.testing.assert_array_equal(pd.read_csv(csv)["start_time_s"], unix["start_time_s"])
    # no Unix times: empty in the CSV and null in Parquet alike (Parquet held '', which isna() missed)
    assert back_csv["start_time_utc"].isna().all() and back_pq["start_time_utc"].isna().all()
    timed = build_table(scan_temperatures(_scans(2, start=1_709_308_837.25), None), results[:2])
    back = pd.read_parquet(write_table(timed, tmp_path / "timed")[1])["start_time_utc"]
    assert str(back.dtype).startswith("datetime64") and str(back.dt.tz) == "UTC"
    assert back.iloc[1] - back.iloc[0] == pd.Timedelta(seconds=60)
    assert back_pq["scan_id"].tolist() == ["100", "101", "102"]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


def test_dates_that_do_not_tell_day_from_month_are_read_month_first_with_a_warning(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("time,temperature_C\n02/05/2024 09:00:00,25\n03/05/2024 09:00:00,75\n")
    with pytest.warns(UserWarning, match=r"log\.csv: dates such as '02/05/2024 09:00:00' read month first"):
        df = read_temperature_log(p)
    assert df["time_s"].iloc[0] == pd.Timestamp("2024-02-05 09:00", tz="UTC").timestamp()


def test_repeated_log_times_are_averaged_and_said_where_they_disagree(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("time_s,temperature_C\n0,20\n0,20.5\n60,50\n60,1050\n120,80\n")
    with pytest.warns(UserWarning, match=r"log\.csv: 1 time\(s\) repeat with temperatures up to 1e\+03 °C apart "
                                         r"\(at 60 s\)"):
        df = read_temperature_log(p)
    assert df["temperature_C"].tolist() == [20.25, 550.0, 80.0]


def test_the_time_plot_joins_scans_in_time_order(tmp_path, monkeypatch):
    """Scans listed out of time order (file names that do not sort by time): the plot's line
    runs through them by time, not back and forth in the table's order."""
    import analysis.plots as plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi=130: figures.append(fig) or path)
    table = pd.DataFrame({"scan_index": [0, 1, 2], "start_time_s": [200.0, 100.0, 300.0],
                          "mid_time_s": [205.0, 105.0, 305.0], "temperature_C": [30.0, 20.0, 40.0],
                          "crack_fraction": [0.02, 0.01, 0.03], "pore_fraction": [0.0, 0.0, 0.0],
                          "status": ["ok", "ok", "ok"]})
    plots.plot_crack_vs_time(table, tmp_path / "t.png")
    crack = figures[0].axes[0].lines[0]
    assert np.all(np.diff(crack.get_xdata()) > 0)
    np.testing.assert_allclose(crack.get_ydata(), [1.0, 2.0, 3.0])
    # an all-day log: the axis spans the scans (it spanned the log, the scans a spike at 0)
    log = pd.DataFrame({"time_s": np.arange(-6 * 3600.0, 6 * 3600.0, 60.0)})
    log["temperature_C"] = 20 + log["time_s"] / 600
    plots.plot_crack_vs_time(table, tmp_path / "t.png", log=log)
    lo, hi = figures[1].axes[0].get_xlim()
    assert lo == pytest.approx(95.0) and hi == pytest.approx(315.0) and "time (s)" in figures[1].axes[0].get_xlabel()
    # a scan without a time is said to be missing from the plot, under the axis (inside it the note hid
    # the temperature line: blind probe AG), by its id
    table.loc[1, ["start_time_s", "mid_time_s"]] = np.nan
    plots.plot_crack_vs_time(table, tmp_path / "t.png")
    assert figures[2].axes[0].get_xlabel().endswith(
        "\nnot shown: 1 scan(s) with no time in the table (1; see the status column)")
    # a scan not analysed: a cross at the top edge, not at 0 % (read as "no cracks": probe AG), and
    # the temperature plot names it (it was dropped unsaid)
    table.loc[1, ["start_time_s", "mid_time_s"]] = [100.0, 105.0]
    table.loc[2, "status"] = "not reconstructed: cannot be read"
    plots.plot_crack_vs_time(table, tmp_path / "t.png")
    cross = next(line for line in figures[3].axes[0].lines if line.get_marker() == "x")
    assert list(cross.get_ydata()) == [1.0] and cross.get_transform() == figures[3].axes[0].get_xaxis_transform()
    plots.plot_crack_vs_temperature(table.assign(heating_rate_C_per_min=[1.0, 1.0, 1.0]), tmp_path / "T.png")
    assert figures[4].axes[0].get_xlabel() == ("temperature (°C)\nnot shown: 1 scan(s) not analysed or without a "
                                               "temperature (2; see the status column)")


def test_a_log_of_local_date_times_without_a_zone_is_said_to_be_read_as_utc(tmp_path):
    """Furnace logs write local time without a zone; scans record Unix times. A log of naive
    date-times gets a warning (it was read as UTC in silence: 30-109 °C for 400-800 °C); one
    the scans miss by whole hours says so in its error (it only advised --extrapolate)."""
    import warnings

    t0 = 1_796_475_600.0  # 2026-12-05 13:00:00 UTC
    naive = tmp_path / "naive.csv"
    naive.write_text("Time,Temperature (°C)\n" + "".join(
        f"2026-12-05 14:{m:02d}:00,{400 + 10 * m}\n" for m in range(16)))  # 14:00 local = 13:00 UTC
    zoned = tmp_path / "zoned.csv"
    zoned.write_text("Time,Temperature (°C)\n" + "".join(
        f"2026-12-05T14:{m:02d}:00+01:00,{400 + 10 * m}\n" for m in range(16)))
    log = read_temperature_log(naive)
    assert log.attrs["naive_times"] and not read_temperature_log(zoned).attrs["naive_times"]
    assert re.search(r"naive\.csv: the log's date-times carry no time zone and are read as UTC, while the scans "
                     r"record Unix times .* set timezone:", clock_zone_warning(True, [], True, naive))
    assert clock_zone_warning(True, ["a.h5"], False, naive) is None  # both without a zone: one clock
    with pytest.raises(FlytomoError, match=r"inside it were the log's times 1 h earlier: is the log in local time"):
        scan_temperatures(_scans(2, start=t0), log, naive)
    for zone in ("+01:00", "Europe/Paris"):  # the logger's clock given: read right, nothing to say
        local = read_temperature_log(naive, timezone=zone)
        assert not local.attrs["naive_times"]
        np.testing.assert_array_equal(local["time_s"], read_temperature_log(zoned)["time_s"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = scan_temperatures(_scans(2, start=t0), read_temperature_log(zoned), zoned)
    np.testing.assert_allclose(df["temperature_C"], [400 + 10 * 5 / 60, 400 + 10 * 65 / 60])
    # the table gives the start as a date a spreadsheet shows too (it gave Unix seconds only)
    table = build_table(df, [{"scan_index": i, "status": "ok"} for i in range(2)])
    assert list(table["start_time_utc"]) == ["2026-12-05T13:00:00.000+00:00", "2026-12-05T13:01:00.000+00:00"]


def test_a_few_readings_that_are_no_numbers_are_left_out_with_a_warning(tmp_path):
    """One OVER (or empty cell) in 100 readings refused the whole log; it is left out now, with a
    warning naming its line, and the log is interpolated across it. Many such rows: refused."""
    rows = [f"{t},{20 + t}" for t in range(100)]
    rows[50] = "50,OVER"
    path = tmp_path / "log.csv"
    path.write_text("time_s,temperature_C\n" + "\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match=r"log\.csv: line 52: .* 1 of 100 reading\(s\) like it .* left out"):
        log = read_temperature_log(path)
    assert len(log) == 99 and 50.0 not in set(log["time_s"])
    df = scan_temperatures([{"index": 0, "scan_id": 0, "start_time_s": 49.0, "mid_time_s": 50.0,
                             "duration_s": 2.0}], log, path)
    assert df["temperature_C"][0] == pytest.approx(70.0)
    rows[10:20] = [f"{t}," for t in range(10, 20)]  # 11 of 100: refused
    path.write_text("time_s,temperature_C\n" + "\n".join(rows) + "\n")
    with pytest.raises(FlytomoError, match=r"line 12: .* \(11 bad row\(s\)\)"):
        read_temperature_log(path)


def test_dotted_dates_are_read_day_first(tmp_path):
    """A blind probe: a furnace log of 'Date;Time;T (K)' with dates like 05.03.2024 was read as
    3 May (no convention writes the month first with dots) and the scans fell outside it."""
    import warnings

    p = tmp_path / "log.csv"
    for text in ("Date;Time;T (K)\n05.03.2024;10:00:00;300\n05.03.2024;10:10:00;400\n",
                 "time,temperature_C\n05.03.24 10:00:00,25\n05.03.24 10:10:00,30\n",  # two-digit years too
                 "Date;Time;T (K)\n05.03.24;10:00:00;300\n05.03.24;10:10:00;400\n"):
        p.write_text(text)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            df = read_temperature_log(p)
        assert not [w for w in caught if "month first" in str(w.message)]
        assert df["time_s"].iloc[0] == pd.Timestamp("2024-03-05 10:00", tz="UTC").timestamp(), text
    p.write_text("time,temperature_C\n05/03/24 10:00:00,25\n05/03/24 10:10:00,30\n")  # slashes: said
    with pytest.warns(UserWarning, match="read month first"):
        read_temperature_log(p)


def test_a_log_with_a_gap_or_times_going_back_says_so(tmp_path):
    """A blind probe: a 10-s log whose clock jumps an hour forward gave scans in the hole
    temperatures interpolated across it (460 C where the furnace was at 475-800 C) without a
    word, and rows out of order were sorted silently. Both are said now, naming where."""
    t = np.r_[np.arange(0.0, 300.0, 10.0), np.arange(3900.0, 4500.0, 10.0)]
    pd.DataFrame({"time_s": t, "temperature_C": 25.0 + t / 10}).to_csv(tmp_path / "gap.csv", index=False)
    log = read_temperature_log(tmp_path / "gap.csv")
    with pytest.warns(UserWarning, match=r"gap\.csv: 2 scan\(s\) \(101, 102\) fall in a gap of the log with no "
                                         r"readings for 60 min \(290\.\.3900 s; it reads every 10 s elsewhere\)"):
        df = scan_temperatures(_scans(3, start=30.0, spacing=1500.0), log, tmp_path / "gap.csv")
    # the rows say so too (blind probe R: they read 'log', like measured ones)
    assert list(df["temperature_from"]) == ["log", "log gap (interpolated)", "log gap (interpolated)"]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scan_temperatures(_scans(4, start=30.0, spacing=60.0), log, tmp_path / "gap.csv")  # all before the gap
    p = tmp_path / "ooo.csv"
    p.write_text("time_s,temperature_C\n0,20\n20,40\n10,30\n30,50\n")
    with pytest.warns(UserWarning, match=r"ooo\.csv: line 4: the time goes back 10 s \(1 place\(s\) like it"):
        df = read_temperature_log(p)
    assert df["time_s"].tolist() == [0.0, 10.0, 20.0, 30.0]


def test_kelvin_under_a_header_without_a_unit_gets_a_hint(tmp_path):
    """A blind probe: readings 388-1073 under 'temperature' were taken as °C without a word."""
    p = tmp_path / "log.csv"
    p.write_text("time_s,temperature\n0,388\n60,700\n120,1073\n")
    with pytest.warns(UserWarning, match=r"column 'temperature' names no unit and its lowest reading is 388: read as "
                                         r"°C; if they are kelvin"):
        df = read_temperature_log(p)
    assert df["temperature_C"].tolist() == [388.0, 700.0, 1073.0]
    import warnings

    for header in ("temperature_C", "T (C)", "temperature"):
        p.write_text(f"time_s,{header}\n0,{25 if header == 'temperature' else 388}\n60,700\n")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            read_temperature_log(p)


def test_a_german_controllers_log_is_read(tmp_path):
    """A blind probe: 'Datum;Zeit;Temperatur' (a controller set up in German) was not recognised."""
    p = tmp_path / "log.csv"
    p.write_text("Datum;Zeit;Temperatur (°C)\n05.03.2024;10:00:00;25,5\n05.03.2024;10:10:00;75,0\n")
    df = read_temperature_log(p)
    assert df["time_s"].tolist() == [pd.Timestamp("2024-03-05 10:00", tz="UTC").timestamp() + k for k in (0, 600)]
    assert df["temperature_C"].tolist() == [25.5, 75.0]
    p.write_text("Zeit (s);Temperatur\n0;25\n60;75\n")
    assert read_temperature_log(p)["time_s"].tolist() == [0.0, 60.0]


def test_a_controllers_export_with_a_preamble_and_pv_sp_columns_is_read(tmp_path):
    """A blind probe: a Eurotherm-style export (lines about the instrument above the header,
    `Setpoint SP [°C]` beside `Temperature PV [°C]`, cp1252) was a tokenizer error; without the
    preamble, PV and SP were 'no temperature column'. The process value is read, never the
    setpoint; an error's line number counts the preamble."""
    p = tmp_path / "furnace.csv"
    body = ("Date;Time;Setpoint SP [°C];Temperature PV [°C];Output [%]\n"
            "10.06.2024;06:12:20;30,0;30,2;49,4\n10.06.2024;06:13:20;80,0;75,5;90,0\n")
    p.write_bytes(("Furnace controller export\nInstrument;Eurotherm 3216 (loop 1)\n\n" + body).encode("cp1252"))
    df = read_temperature_log(p)
    assert df["temperature_C"].tolist() == [30.2, 75.5]
    assert df["time_s"].tolist() == [pd.Timestamp("2024-06-10 06:12:20", tz="UTC").timestamp() + k for k in (0, 60)]
    p.write_text(body.replace("Setpoint SP", "SP").replace("Temperature PV", "PV"))
    assert read_temperature_log(p)["temperature_C"].tolist() == [30.2, 75.5]
    p.write_text("Program: ramp 50 C/min\ntime_s,temperature_C\n0,25\n10,hot\n")
    with pytest.raises(FlytomoError, match="line 4"):
        read_temperature_log(p)
    # blind probe W: 'Sample PV (C)' beside 'Heater SP (C)' was "no column reads as the sample's
    # temperature"; a heater's reading beside the sample's is not taken
    p.write_text("Time,Heater SP (C),Heater PV (C),Sample PV (C)\n0,20,21,19\n10,30,29,28\n")
    assert read_temperature_log(p)["temperature_C"].tolist() == [19.0, 28.0]
    p.write_text("Time,Heater SP (C),Sample PV (C)\n0,20,21\n10,30,29\n")
    assert read_temperature_log(p)["temperature_C"].tolist() == [21.0, 29.0]


def test_a_delimiter_ending_every_row_does_not_shift_the_columns(tmp_path):
    """A blind probe: LabVIEW ends each row with a tab; pandas then took the first column as the
    index, so 'time' was read from the temperature and 'temperature' from the setpoint, silently
    (130-385 °C where the log said 115-415). A preamble line naming a time and a temperature
    ('Channels,Time,Temp') is not the header when more names follow it."""
    p = tmp_path / "lv.txt"
    p.write_text("Time (s)\tTemperature (°C)\tSetpoint (°C)\n0.0\t80.00\t130.00\t\n100.0\t180.00\t230.00\t\n")
    df = read_temperature_log(p)
    assert df["time_s"].tolist() == [0.0, 100.0] and df["temperature_C"].tolist() == [80.0, 180.0]
    p.write_text("Linkam export\nChannels,Time,Temp\ntime_s,SP (C),PV (C)\n0,100,80.5\n60,100,90.5\n")
    df = read_temperature_log(p)
    assert df["time_s"].tolist() == [0.0, 60.0] and df["temperature_C"].tolist() == [80.5, 90.5]


@pytest.mark.parametrize("header", ["Time (s),T SP,T PV", "Time (s),Loop 1 SP,Loop 1 PV", "time_s,SP1,PV1",
                                    "time_s,Set Point,Process Variable", "time_s,T_set,T_meas"])
def test_controllers_process_value_names_are_read_and_never_the_setpoint(tmp_path, header):
    p = tmp_path / "log.csv"
    p.write_text(f"{header}\n0,40,30\n10,60,50\n")
    assert read_temperature_log(p)["temperature_C"].tolist() == [30.0, 50.0]


@pytest.mark.parametrize("header", ["Time (s),Temperature (setpoint),Temperature (sample)",
                                    "Time (min),Temperature (setpoint),Temperature (degrees C)",
                                    "Time (s),Temperature (SP),Temperature (Celsius)",
                                    # a second probe: these were refused
                                    "Time (minute),Temperature (setpoint),Temperature (degree C)",
                                    "Time (sec.),Temperature (target),Temperature (deg. C)",
                                    "Time (s),Temperature (setpoint),Temperature (furnace)",
                                    "Time [s];Temperature [setpoint];Temperature [thermocouple]",
                                    "Time (s),Temperature (setpoint),Temperature (sample; ℃)"])
def test_a_word_in_brackets_is_part_of_the_column_name_and_not_a_unit(tmp_path, header):
    """A blind probe: 'Temperature (setpoint)' stopped the log with "temperature unit 'setpoint'
    not understood" instead of reading the sample's column beside it; unit words (Celsius,
    degrees C, minutes) are units."""
    p = tmp_path / "log.csv"
    sep = ";" if header.count(";") == 2 else ","
    p.write_text(f"{header}\n0{sep}40{sep}30\n1{sep}60{sep}50\n", encoding="utf-8")
    df = read_temperature_log(p)
    assert df["temperature_C"].tolist() == [30.0, 50.0]
    assert df["time_s"].tolist() == [0.0, 60.0 if "min" in header else 1.0]


@pytest.mark.parametrize("header", ["Time (min),Temperature (SV),Temperature (furnace)",
                                    "Time (min),Temperature (command),Temperature (furnace)",
                                    "Time (min),Temperature (demand; °C),Temperature (oven; °C)",
                                    "Time (min),Temperature (controller output %),Temperature (furnace)",
                                    "Time (min),Temperature rate (°C/min),Temperature (furnace)",
                                    "Run time (minute),Temp. (°C),Temperature (programmed)"])
def test_setpoints_rates_and_outputs_are_never_the_temperature(tmp_path, header):
    """A third blind probe: where no usual name matched, the first temperature-named column
    was read: a setpoint under another word (SV, command, demand), a controller's output, or a
    heating rate (refused as 'unit min'). Run time and Temp. are read too."""
    p = tmp_path / "log.csv"
    first, second = (40, 30) if "programmed" not in header else (30, 40)
    p.write_text(f"{header}\n0,{first},{second}\n1,{first + 20},{second + 20}\n", encoding="utf-8")
    df = read_temperature_log(p)
    assert df["temperature_C"].tolist() == [30.0, 50.0] and df["time_s"].tolist() == [0.0, 60.0]


def test_thermocouple_columns_are_read_and_a_choice_among_several_is_said(tmp_path):
    """Blind probe R: a log of 'Time, Thermocouple_1' was refused as lacking temperature_C, with
    advice about header lines (the wrong way). Numbered thermocouples are read now; where there
    are several, the one taken is named, and a log without any reading says what to name."""
    p = tmp_path / "tc.tsv"
    p.write_text("Time\tThermocouple_1\n0\t25\n10\t35\n")
    assert read_temperature_log(p)["temperature_C"].tolist() == [25.0, 35.0]
    p.write_text("Time\tThermocouple_1\tThermocouple_2\n0\t25\t-5\n10\t35\t-5\n")
    with pytest.warns(UserWarning, match=r"tc\.tsv: 'Thermocouple_1' is read as the sample's temperature, not "
                                         r"'Thermocouple_2'; .* name it temperature_C"):
        assert read_temperature_log(p)["temperature_C"].tolist() == [25.0, 35.0]
    p.write_text("Time\tHeater_power\n0\t25\n10\t35\n")
    with pytest.raises(FlytomoError, match=r"tc\.tsv: no column of the temperature log reads as the sample's "
                                           r"temperature; found Time, Heater_power: name the sample's reading"):
        read_temperature_log(p)


def test_the_newest_scan_past_a_log_still_being_written_waits_for_it(tmp_path):
    """Blind probe W: a new scan that ended 35 s after the log's last reading (the log still being
    written during the experiment) refused the whole run. A scan that began inside the log (or
    within a scan's duration of its end), newest of all, gets an empty temperature marked 'not in
    the log yet', with a warning; a scan that began well after the end is an error as before."""
    log = read_temperature_log(write_log(tmp_path / "log.csv", t_end=155.0))
    with pytest.warns(UserWarning, match=r"1 newest scan\(s\) \(102\) end after its last reading: .*'not in the "
                                         r"log yet', until the log covers them"):
        df = scan_temperatures(_scans(3), log, "log.csv")  # 30-40, 90-100, 150-160
    assert np.isfinite(df["temperature_C"][:2]).all() and np.isnan(df["temperature_C"][2])
    assert list(df["temperature_from"]) == ["log", "log", "not in the log yet"]
    with pytest.raises(FlytomoError, match=r"scan 102 .* \(1 more scan\(s\) outside the log\)"):
        scan_temperatures(_scans(4), log, "log.csv")  # 103 begins 55 s after the log's end: a log that stopped
    held = scan_temperatures(_scans(3), log, "log.csv", extrapolate=True)
    assert held["temperature_from"][2] == "log end (extrapolated)"


def test_a_run_reconstructs_a_scan_past_a_log_still_being_written():
    """The run's check before any work: a scan waiting for the log is a warning, not a refusal."""
    from pathlib import Path

    from hpc.config import TemperatureLog
    from hpc.engine import log_problems
    from hpc.planner import ScanPlan

    log = TemperatureLog(np.arange(0.0, 156.0, 5.0), np.linspace(20, 200, 32))
    plans = [ScanPlan(i, Path(f"s{i}.h5"), f"s{i}", start_time_s=30.0 + 60 * i, duration_s=10.0) for i in range(3)]
    unusable, to_warn = log_problems(plans, log, extrapolate=False)
    assert unusable is None and len(to_warn) == 1 and "s2.h5" in to_warn[0], to_warn
    assert to_warn[0].endswith("reconstructed, its temperature left empty until the log covers it")
    plans.append(ScanPlan(3, Path("s3.h5"), "s3", start_time_s=210.0, duration_s=10.0))
    unusable, _ = log_problems(plans, log, extrapolate=False)
    assert unusable is not None and "s2.h5" in unusable and "(+1 more)" in unusable
