"""The crack table: one row per scan, joined with the temperature log; CSV and Parquet.

Temperature log: a CSV with columns ``time_s`` (seconds, on the experiment clock the scan
times use) and ``temperature_C``. The temperature of a scan is the log linearly
interpolated at mid-scan; its heating rate (°C/min) is the log's derivative smoothed over
the scan: the least-squares slope of the log over ``mid ± d/2``, ``d`` the scan duration
(at least 5 log intervals, so that a very short scan does not turn sensor noise into a
rate). A log that does not cover a scan is an error unless ``extrapolate=True``, which holds
the first / last reading beyond the log.
"""
from __future__ import annotations

import math
import os
import re
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recon.errors import FlytomoError
from recon.io.metadata import localize_naive, parse_zone, unix_seconds_factor

from .store import scan_times

__all__ = [
    "COLUMNS",
    "read_temperature_log",
    "scan_temperatures",
    "build_table",
    "write_table",
    "atomic_write",
    "clock_origin",
    "clock_zone_warning",
    "clocks_differ",
    "is_unix_time",
    "outside_log_text",
    "past_log_end",
    "scan_list_rows",
]

#: a log with up to this share of readings that are no numbers (a sensor's OVER, an empty cell)
#: has them left out with a warning; more: refused
LOG_BAD_ROWS_MAX = 0.05

#: scan times above this many seconds are Unix times (after 1973-03-03), not an experiment clock
UNIX_TIME_MIN_S = 1e8

#: columns of the crack table, in order
COLUMNS = [
    "scan_index", "scan_id", "file", "start_time_s", "start_time_utc", "mid_time_s", "elapsed_min", "temperature_C",
    "temperature_min_C", "temperature_max_C",
    "heating_rate_C_per_min", "particle_volume_vox", "crack_volume_vox", "pore_volume_vox",
    "crack_fraction", "pore_fraction", "n_cracks", "n_pores", "speck_fraction", "edge_sigma_px", "ring_fraction",
    "other_particles", "status", "temperature_from",
]

#: ``temperature_from`` values: where a row's temperature was read
TEMPERATURE_FROM = {"log": "log", "held": "log end (extrapolated)", "gap": "log gap (interpolated)",
                    "file": "scan file", "none": "", "pending": "not in the log yet"}


def past_log_end(lo: np.ndarray, hi: np.ndarray, log_start: float, log_end: float) -> np.ndarray:
    """(scan,) bool: the newest scans, which end after the log's last reading but began while it
    recorded (or within one scan's duration, the median, of its end), with scans inside the log before
    them: a log still being written during the experiment (blind probe W: one new scan 35 s past the
    log refused the whole run). Their temperatures wait for the log. None where any scan past its
    end began later than that (a log that stopped, or another clock: an error as before)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    eps = 1e-9 * max(1.0, abs(log_end))
    timed = np.isfinite(lo) & np.isfinite(hi)
    late = timed & (hi > log_end + eps)
    inside = timed & ~late & (lo >= log_start - eps)
    slack = float(np.nanmedian(hi[timed] - lo[timed])) if timed.any() else 0.0
    if (not late.any() or not inside.any() or np.nanmax(lo[inside]) > np.nanmin(lo[late])
            or np.nanmax(lo[late]) > log_end + slack):
        return np.zeros(lo.shape, bool)
    return late


def is_unix_time(t: float) -> bool:
    """Whether a time (s) is a Unix time (after UNIX_TIME_MIN_S), not an experiment clock's."""
    return t >= UNIX_TIME_MIN_S


def clock_origin(times_s: np.ndarray, zone: str | None = None) -> tuple[float, str]:
    """Where to count shown times from: ``(origin_s, name)``.

    Unix times (the earliest above :data:`UNIX_TIME_MIN_S`) count from the earliest one,
    named as a UTC date ("2023-11-14 22:13:20 UTC"), or on the clock ``zone`` names
    (:func:`recon.io.metadata.parse_zone`: "2023-11-14 17:13:20 EST", as the lab's notebook
    has it; blind probe AG); times on an experiment clock count from its 0 (name ""). NaNs
    are ignored."""
    t = np.asarray(times_s, dtype=float)
    t = t[np.isfinite(t)]
    if t.size == 0 or not is_unix_time(t.min()):
        return 0.0, ""
    t0 = float(t.min())
    if zone is not None:
        from recon.io.metadata import parse_zone

        try:
            return t0, datetime.fromtimestamp(t0, parse_zone(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")
        except ValueError:  # checked where the zone was given: UTC as before
            pass
    return t0, datetime.fromtimestamp(t0, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span_text(a: float, b: float) -> str:
    """A time span for messages: UTC dates for Unix times, else seconds on the experiment clock."""
    if not is_unix_time(a):
        return f"{a:g}..{b:g} s"
    try:
        da, db = (datetime.fromtimestamp(x, timezone.utc) for x in (a, b))
    except (OverflowError, OSError, ValueError):  # beyond the calendar's years
        return f"{a:g}..{b:g} s"
    end = db.strftime("%H:%M:%S" if da.date() == db.date() else "%Y-%m-%d %H:%M:%S")
    return f"{da:%Y-%m-%d %H:%M:%S}..{end} UTC"


def clocks_differ(scan_time_s: float, log_time_s: float) -> bool:
    """One of the two is a Unix time and the other is not: the log and the scans use different clocks."""
    return is_unix_time(scan_time_s) != is_unix_time(log_time_s)


def outside_log_text(scan: str, a: float, b: float, log_a: float, log_b: float) -> str:
    """The one description of a scan (window ``a..b`` s) outside the log's ``log_a..log_b``:
    times as dates where they are Unix times, and a word on clocks when one side is a Unix
    time and the other is not (a log that counts from its own start, scans that record dates)."""
    text = f"scan {scan} runs {_span_text(a, b)}, outside the temperature log ({_span_text(log_a, log_b)})"
    hours = [h for h in range(-14, 15) if h and log_a + 3600 * h <= a and b <= log_b + 3600 * h]
    if is_unix_time(a) and is_unix_time(log_b) and hours:
        text += (f" but inside it were the log's times {abs(hours[0])} h {'later' if hours[0] > 0 else 'earlier'}: "
                 "is the log in local time without its zone? (write it in: 2024-05-02 09:00:00+02:00)")
    if clocks_differ(a, log_b):
        which = "Unix times (dates)" if is_unix_time(a) else "an experiment clock"
        text += (f": the scans record {which}, the log's time_s does not — write time_s on the scans' "
                 "clock (Unix seconds, or seconds from the same zero)"
                 + (", or, for a log that counts from its own start, give the date-time it reads 0 at "
                    "(temperature_log_start: in the experiment config, flytomo analyze --log-start)"
                    if is_unix_time(a) else ""))
    return text


#: accepted names of the log's two columns (compared lower-case, units in brackets removed),
#: in order of preference
TIME_NAMES = ("time_s", "time", "elapsed_s", "elapsed", "elapsed_time", "time_elapsed", "relative_time",
              "run_time", "runtime", "process_time", "time_since_start",
              "seconds", "t_s", "timestamp", "datetime", "date_time", "date",
              "zeit", "zeitstempel", "datum_zeit", "datum")  # German controllers' words
#: the sample's reading first where a furnace logs several (a setpoint is never taken)
TEMPERATURE_NAMES = ("temperature_c", "temperature", "temp_c", "temp", "t_c", "temperature_k",
                     "temp_k", "t_k", "sample_temperature", "temperature_sample", "sample_temp", "sample_t", "t_sample",
                     "thermocouple", "tc", "tc1", "t", "temperatur", "temperatur_c", "temperatur_k",
                     # a controller's process value (its reading), never its setpoint (SP)
                     "temperature_pv", "pv_temperature", "temp_pv", "pv_temp", "pv", "process_value",
                     "actual_temperature", "temperature_actual", "istwert", "temperatur_istwert",
                     "process_variable", "t_pv", "pv1", "loop_1_pv", "loop1_pv", "t_meas", "t_measured",
                     "measured_temperature", "temperature_measured")
_TIME_UNITS = {"s": 1.0, "sec": 1.0, "seconds": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0}
#: unit words in a column name's brackets, as their symbols
_UNIT_WORDS = {"celsius": "c", "kelvin": "k", "fahrenheit": "f", "oc": "c", "ok": "k", "of": "f",
               "second": "s", "seconds": "s", "secs": "s", "msec": "ms", "minute": "min", "minutes": "min",
               "mins": "min", "hr": "h", "hrs": "h", "hour": "h", "hours": "h"}
#: what a column name's brackets may hold as a unit; anything else there is part of the name
_UNITS = frozenset(_TIME_UNITS) | {"c", "k", "f"}
#: 'deg C', 'degree C', 'deg. C', 'degrees Celsius': the degree word before a temperature unit
_DEGREE = re.compile(r"deg(?:rees?|\.)?\s*(?=(?:c|f|k|celsius|fahrenheit|kelvin)\b)")


def _unit_of(part: str) -> str:
    """One piece of a column name's brackets as a unit symbol ('min', 'c', ...), or the piece."""
    word = part.strip().strip(".").strip()
    return _UNIT_WORDS.get(word, word)


def _column_key(name: str) -> tuple[str, str]:
    """'Temperature (°C)' → ('temperature', 'c'); 'time_s' → ('time_s', ''); 'T [K]' → ('t', 'k');
    'timestamp_ms' → ('timestamp', 'ms'); 'Temperature/K' → ('temperature', 'k'); 'Date/Time' →
    ('date_time', ''); 'Temperature (sample, K)' → ('temperature_sample', 'k'); 'Temperature
    (setpoint)' → ('temperature_setpoint', '')."""
    text = str(name).strip().lower().replace("°", "").replace("º", "").replace("℃", "c").replace("℉", "f")
    text = _DEGREE.sub("", text)
    unit = ""
    m = re.match(r"^(.*?)\s*[(\[]\s*([^)\]]*)\s*[)\]]\s*$", text)
    if m:
        text, words = m.group(1), []
        for part in re.split(r"[,;]", m.group(2)):  # '(sample, K)': a word of the name and a unit
            u = _unit_of(part)
            if u in _UNITS and not unit:
                unit = u
            elif u:
                words.append(u)  # 'Temperature (setpoint)', 'T [sample]': a word of the name, not a unit
        text = " ".join([text, *words])
    m = re.match(r"^(.*?)\s*/\s*(k|c|f|s|ms|min|h)$", text)  # 'Temperature/K', 'time/s'
    if m and not unit:
        text, unit = m.group(1), m.group(2)
    text = re.sub(r"\.(?=\s|$)", "", text.strip())  # 'Temp. (°C)': an abbreviation's dot
    key = re.sub(r"[\s\-/]+", "_", text.strip())
    m = re.match(r"^(.+)_(ms|min|h)$", key)  # 'timestamp_ms', 'time_min': the unit as a suffix
    if m and not unit:
        key, unit = m.group(1), m.group(2)
    return key, unit


def _log_delimiter(path: Path, encoding: str, skip: int) -> str | None:
    """None (pandas guesses among the characters of the header line) where the header line holds a
    comma, semicolon or tab; else whitespace between several names, or one column (blind probe
    AD: a header 'temperature_C' alone was split on its letter 'e')."""
    with open(path, encoding=encoding, errors="strict") as f:
        lines = [line for line in f.read(1 << 16).splitlines()[skip:] if line.strip() and not line.lstrip().startswith("#")]
    header = lines[0] if lines else ""
    if any(d in header for d in ",;\t"):
        return None
    return r"\s+" if len(header.split()) > 1 else ","


def _preamble_lines(path: Path, encoding: str, look: int = 50) -> int:
    """How many lines a controller's export has before its header (instrument, program, start
    time...): the lines before the first of the first ``look`` that names a time and a
    temperature column; 0 where none does (the first line is the header). UnicodeDecodeError
    for another encoding."""
    with open(path, encoding=encoding, errors="strict") as f:
        lines = [next(f, "") for _ in range(look)]
    rows = [(i, [x.strip().strip('"') for x in re.split(r"[;,\t]", line)]) for i, line in enumerate(lines)
            if line.strip() and not line.lstrip().startswith("#")]
    for (i, fields), (_, after) in zip(rows, rows[1:]):
        # the header names a time and a temperature column, and readings follow it (a preamble line
        # such as 'Channels,Time,Temp' is followed by more names)
        if (_pick(fields, TIME_NAMES) is not None and _pick(fields, TEMPERATURE_NAMES, taken=_pick(fields, TIME_NAMES))
                and any(re.fullmatch(r"[-+]?\d+([.,:/ T-]\d+)*", x) for x in after)):
            return i
    return 0


#: words that make a temperature column a setpoint (never read as the sample's temperature)
SETPOINT_WORDS = frozenset({"setpoint", "set", "sp", "target", "set_point", "soll", "sollwert", "program", "ramp",
                            "sv", "wsp", "tsp", "command", "cmd", "demand", "nominal", "setpt", "programmed",
                            "programme", "requested", "desired"})
#: words of a temperature-named column that is not a reading at all (a rate, a heater's output)
NOT_A_READING_WORDS = frozenset({"rate", "output", "out", "power", "heater", "slope", "percent", "pct", "error",
                                 "deviation", "min", "s", "h"})


def _pick_temperature_reading(columns, taken: str | None) -> str | None:
    """Where no usual name matched: the first of :func:`_temperature_readings`."""
    found = _temperature_readings(columns, taken)
    return found[0] if found else None


#: words of a column in a temperature unit that make it a reading ('Sample PV (C)'), the sample's first
READING_WORDS = ("sample", "probe", "specimen", "pv", "actual", "measured", "meas", "reading", "value")


def _temperature_readings(columns, taken: str | None) -> list[str]:
    """The columns named temperature/temp/T/thermocouple/TC with more words ('Temperature
    (furnace)', 'T [thermocouple]', 'Thermocouple_1'), none of them a setpoint's (SP, SV,
    target, command, ...) or a non-reading's (rate, output, ...), and no unit but a
    temperature's; then columns in a temperature unit named as a reading (:data:`READING_WORDS`:
    'Sample PV (C)' beside 'Heater SP (C)', blind probe W), those naming the sample first."""
    out, readings = [], []
    for c in columns:
        if c == taken:
            continue
        key, unit = _column_key(c)
        words = key.split("_")
        if (words[0] in ("temperature", "temp", "temperatur", "t", "thermocouple", "tc") and len(words) > 1
                and unit in ("", "c", "k", "f") and not (SETPOINT_WORDS | NOT_A_READING_WORDS) & set(words[1:])
                and "%" not in key):
            out.append(c)
        elif (unit in ("c", "k", "f") and set(READING_WORDS) & set(words)
              and not (SETPOINT_WORDS | NOT_A_READING_WORDS) & set(words)):
            readings.append(c)
    sample = [c for c in readings if {"sample", "probe", "specimen"} & set(_column_key(c)[0].split("_"))]
    return out + sample + [c for c in readings if c not in sample]


def _temperature_column(columns, taken: str | None) -> str | None:
    """The column of the sample's temperature: a usual name (:data:`TEMPERATURE_NAMES`, in order
    of preference), else :func:`_pick_temperature_reading`; never ``taken`` (the time's)."""
    return _pick(list(columns), TEMPERATURE_NAMES, taken=taken) or _pick_temperature_reading(columns, taken)


def _celsius(values: pd.Series, column: str, path: Path) -> np.ndarray:
    """A temperature column's readings in °C, from the unit its name gives ('T (K)',
    temperature_K, °F; none: °C, with a hint where the readings look like kelvin)."""
    key, unit = _column_key(column)
    named = bool(unit) or key.endswith(("_k", "_c"))
    unit = unit or ("k" if key.endswith("_k") else "c")
    temps = _numbers(values).to_numpy(float)
    if not named and np.isfinite(temps).any() and np.nanmin(temps) > KELVIN_HINT_MIN:
        warnings.warn(f"{path}: column {column!r} names no unit and its lowest reading is {np.nanmin(temps):.4g}: "
                      "read as °C; if they are kelvin (room temperature ~293), name the column 'T (K)' or "
                      "temperature_K", UserWarning, stacklevel=3)
    if unit == "k":
        return temps - 273.15
    if unit == "f":
        return (temps - 32.0) * 5.0 / 9.0
    if unit != "c":
        raise FlytomoError(path, f"temperature unit {unit!r} not understood (use C, K or F)")
    return temps


def _pick(columns: list[str], names: tuple[str, ...], taken: str | None = None) -> str | None:
    keys = {c: _column_key(c)[0] for c in columns if c != taken}
    for want in names:
        for c, k in keys.items():
            if k == want:
                return c
    return None


#: readings at one time that differ by more than this (°C) are averaged with a warning
DUPLICATE_TIME_SPREAD_C = 1.0
#: pieces of a time of day: hours:minutes[:seconds[.fraction]], a 12-hour clock's AM/PM, a zone
#: that says its offset
_HMS = r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d*)?)?"
_AM_PM = r"(?:[AaPp]\.?[Mm]\.?)?"
_OFFSET = r"(?:Z|UTC|GMT|[+-]\d\d:?\d\d)"
_TIME_OF_DAY = re.compile(rf"^\s*{_HMS}\s*$")
#: a time of day, with a zone or without (a log's separate Time column)
_CLOCK = re.compile(rf"^\s*{_HMS}\s*{_AM_PM}\s*{_OFFSET}?\s*$")
#: a time of day followed by a zone's name (CEST, PST; not UTC/GMT/Z, which say their offset)
_NAMED_ZONE = re.compile(rf"^\s*{_HMS}\s*{_AM_PM}\s*(?!UTC\b|GMT\b)([A-Z]{{3,5}})\s*$")
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d*,\d+\s*$")


def _numbers(values: pd.Series) -> pd.Series:
    """Numbers of a log column, decimal commas ("25,3", as semicolon-separated spreadsheets
    write them) included; NaN where a value is not a number."""
    num = pd.to_numeric(values, errors="coerce")
    text = values.astype(str)
    comma = text.str.match(_DECIMAL_COMMA) & num.isna()
    if comma.any():
        num = num.where(~comma, pd.to_numeric(text.where(comma).str.replace(",", ".", regex=False), errors="coerce"))
    return num


def _day_first(text: pd.Series, path: Path) -> bool:
    """Whether dates written d1/d2/yyyy or d1/d2/yy (or with dots or dashes) put the day first, decided once
    for the whole column: a first field above 12 somewhere says day first, a second one says
    month first; where neither does, month first (US) with a warning, but day first for dates
    written with dots (05.03.2024: German, Russian, ... as a furnace controller set up there
    writes them; no convention writes the month first with dots). (Left to the parser row by
    row, 02/05 and 13/05 read as 5 February and 13 May.)"""
    fields = text.str.extract(r"^\s*(\d{1,2})([/.-])(\d{1,2})[/.-](?:\d{4}|\d{2})\b")
    if fields[[0, 2]].notna().all(axis=1).mean() <= 0.5:
        return False
    first, second = (pd.to_numeric(fields[k], errors="coerce") for k in (0, 2))
    if (first > 12).any():
        return True
    if (second > 12).any():
        return False
    if (fields[1] == ".").mean() > 0.5:
        return True
    warnings.warn(f"{path}: dates such as {text.iloc[0].strip()!r} read month first (US); no day above 12 "
                  "tells; write ISO dates (2024-05-02) if they are day first", UserWarning, stacklevel=3)
    return False


#: a date-time's zone: Z, UTC/GMT, or an offset such as +01:00, -0500
_ZONE = r"(?:\d(?:Z|\s*(?:UTC|GMT)|\s*[+-]\d\d:?\d\d)\s*$)"


def _times_s(values: pd.Series, unit: str, path: Path, zone: Any = None) -> tuple[np.ndarray, bool]:
    """Seconds from numbers (in ``unit``; unit-less ones above ``UNIX_MS_MIN`` are Unix
    milli-, micro- or nanoseconds) or from date-times (ISO text; naive ones on the clock of
    ``zone``, :func:`recon.io.metadata.parse_zone`, None: UTC, as in the scan files) → (Unix
    seconds, whether they were naive date-times read as UTC). Times of day without a date are
    refused: which day they belong to is a guess."""
    num = _numbers(values)
    if num.notna().mean() > 0.5:
        if unit not in ("", *_TIME_UNITS):
            raise FlytomoError(path, f"time unit {unit!r} not understood (use s, ms, min or h)")
        typical = float(np.nanmedian(num))
        if unit == "" and (factor := unix_seconds_factor(typical)) != 1.0:  # ms, µs or ns: Unix seconds
            return num.to_numpy(float) * factor, False
        return num.to_numpy(float) * _TIME_UNITS.get(unit, 1.0), False
    text = values.astype(str)
    if text.str.match(_TIME_OF_DAY).mean() > 0.5:
        raise FlytomoError(path, f"the time column holds times of day without a date ({text.iloc[0].strip()!r}); "
                                 "write date-times (2024-05-02 09:00:00) or seconds")
    naive = not text.str.contains(_ZONE).mean() > 0.5
    when = pd.to_datetime(text, errors="coerce", utc=True, format="mixed", dayfirst=_day_first(text, path))
    seconds = (when - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(float, na_value=np.nan)
    if naive and zone is not None:
        return localize_naive(seconds, zone), False
    return seconds, naive


def _join_date_and_time(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """A log that writes the date and the time of day in two columns (``Date``, ``Time``, as
    furnace controllers and spreadsheets do) → one date-time column ``date_time`` in their
    place; any other log unchanged. Named zones (``09:00:00 CEST``) are refused: a name does
    not say which offset it means."""
    keys = {_column_key(c)[0]: c for c in df.columns}
    date = keys.get("date") or keys.get("datum")
    clock = keys.get("time") or keys.get("time_of_day") or keys.get("clock") or keys.get("zeit") or keys.get("uhrzeit")
    if date is None or clock is None or df.empty:
        return df
    text = df[clock].astype(str)
    named = text.str.extract(_NAMED_ZONE, expand=False).dropna()
    if len(named) > 0.5 * len(text):
        raise FlytomoError(path, f"the {clock} column's times carry a zone by name ({named.iloc[0]!r}), which flytomo "
                                 "does not guess: write its offset (09:00:00+02:00), or UTC")
    if not text.str.match(_CLOCK).mean() > 0.5:
        return df
    joined = df[date].astype(str).str.strip() + " " + text.str.strip()
    return df.drop(columns=[date, clock]).assign(date_time=joined)


#: a unit-less temperature column whose lowest reading is above this (°C) gets a hint that
#: it may be kelvin: an in-situ heating log starts near room temperature
KELVIN_HINT_MIN = 250.0


def read_temperature_log(path: str | Path, timezone: str | None = None,
                         start: str | float | None = None) -> pd.DataFrame:
    """Read a temperature log → DataFrame (time_s, temperature_C) float64, sorted by time,
    duplicate times averaged, ``attrs["naive_times"]`` True where its date-times carry no zone
    and no ``timezone`` (:func:`recon.io.metadata.parse_zone`) gave their clock: read as UTC
    (:func:`clock_zone_warning` says where that matters). Bad files raise
    :class:`FlytomoError` naming the file.

    ``start``: where the log counts seconds from its own start (a controller's ``Elapsed
    (s)``), the date-time its clock reads 0 at (ISO text, naive on ``timezone``'s clock, or
    Unix seconds): its times are moved onto the scans' clock. A log of dates is refused with it.

    The file is delimited text (comma, semicolon or tab; ``#`` starts a comment). Its time
    column is ``time_s`` or another usual name (``time``, ``elapsed``, ``t``, ``timestamp``,
    …, any case, a unit in brackets: ``Time (min)`` is converted to seconds) holding seconds
    or ISO date-times (Unix seconds; a date without a zone is UTC, as in the scan files;
    unit-less numbers above 1e11 are Unix milli-, micro- or nanoseconds; a ``Date`` column beside a
    ``Time`` column of times of day is read as one date-time). Its temperature column is
    ``temperature_C`` or ``temperature``, ``temp``, ``T`` with an optional unit (``T (K)``,
    ``temperature_K`` are converted to °C). Decimal commas ("25,3") and a UTF-8 BOM or a
    Windows-1252 file, as spreadsheets write them, are read.
    """
    path = Path(path)
    if path.is_dir():
        raise FlytomoError(path, "is a folder; give the temperature log file")
    if not path.is_file():
        raise FlytomoError(path, "no such temperature log")
    df = None
    for encoding in ("utf-8-sig", "cp1252"):  # a BOM as Excel writes it; else a Windows code page
        try:
            skip = _preamble_lines(path, encoding)
            df = pd.read_csv(path, comment="#", sep=_log_delimiter(path, encoding, skip), engine="python",
                             skipinitialspace=True, encoding=encoding,
                             index_col=False,  # a delimiter ending each row (LabVIEW) must not shift the columns
                             skiprows=skip)
            break
        except UnicodeDecodeError:
            continue
        except Exception as err:
            raise FlytomoError(path, f"cannot read the temperature log as CSV ({err}); lines above the column "
                                     "names are skipped where a line names a time and a temperature column, else "
                                     "mark them with #") from None
    if df is None:
        raise FlytomoError(path, "the temperature log is neither UTF-8 nor Windows-1252 text")
    df.columns = [str(c).strip() for c in df.columns]
    df = _join_date_and_time(df, path)
    tcol = _pick(list(df.columns), TIME_NAMES)
    ccol = _temperature_column(df.columns, tcol)
    missing = [name for name, col in (("time_s", tcol), ("temperature_C", ccol)) if col is None]
    if missing == ["temperature_C"]:
        raise FlytomoError(path, f"no column of the temperature log reads as the sample's temperature; found "
                                 f"{', '.join(map(str, df.columns))}: name the sample's reading temperature_C (or "
                                 "T (K), TC1 (°C), Thermocouple_1) in the header line")
    if missing:
        raise FlytomoError(path, f"the temperature log lacks column(s) {', '.join(missing)}; "
                           f"found {', '.join(map(str, df.columns)) or 'none'} (the first line not starting "
                           "with # must name the columns: mark the lines of a header block with #)")
    others = [c for c in _temperature_readings(df.columns, tcol) if c != ccol]
    if others and ccol not in [c for c in df.columns if _column_key(c)[0] in TEMPERATURE_NAMES]:
        warnings.warn(f"{path}: {ccol!r} is read as the sample's temperature, not {', '.join(map(repr, others))}; "
                      f"if another is the sample's, name it temperature_C in the header line", UserWarning,
                      stacklevel=2)
    if df.empty:
        raise FlytomoError(path, f"the temperature log has a header ({tcol}, {ccol}) and no readings")
    zone = _zone(timezone, path)
    times, naive = _times_s(df[tcol], _column_key(tcol)[1], path, zone)  # no unit (time_s, elapsed): seconds
    df = pd.DataFrame({"time_s": times, "temperature_C": _celsius(df[ccol], ccol, path)})
    bad = ~np.isfinite(df.to_numpy()).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 2 + skip  # header is line 1 + skip
        what = f"{tcol} and {ccol} must be numbers{' or dates' if tcol != 'time_s' else ''}"
        if bad.mean() > LOG_BAD_ROWS_MAX or bad.all():
            raise FlytomoError(path, f"line {row}: {what} ({int(bad.sum())} bad row(s))")
        warnings.warn(f"{path}: line {row}: {what}: {int(bad.sum())} of {bad.size} reading(s) like it (a sensor's "
                      "OVER, an empty cell) left out; the log is interpolated across them", UserWarning, stacklevel=2)
        df = df[~bad]
    t = df["time_s"].to_numpy(float)
    back = np.flatnonzero(np.diff(t) < 0)
    if back.size:
        i = int(back[0])
        line = int(df.index[i + 1]) + 2 + skip  # header is line 1 + skip
        warnings.warn(f"{path}: line {line}: the time goes back {t[i] - t[i + 1]:g} s ({back.size} place(s) like it: "
                      "rows out of order, or a clock set back): the readings are taken in time order",
                      UserWarning, stacklevel=2)
    spread = df.groupby("time_s")["temperature_C"].agg(np.ptp)
    if (spread > DUPLICATE_TIME_SPREAD_C).any():
        worst = spread.idxmax()
        warnings.warn(f"{path}: {int((spread > DUPLICATE_TIME_SPREAD_C).sum())} time(s) repeat with temperatures "
                      f"up to {spread.max():.3g} °C apart (at {worst:g} s): their mean is used", UserWarning,
                      stacklevel=2)
    df = df.groupby("time_s", as_index=False)["temperature_C"].mean().sort_values("time_s")
    if len(df) < 2:
        raise FlytomoError(path, "the temperature log needs at least two readings")
    df = df.reset_index(drop=True)
    if start is not None:
        zero, naive = log_start_s(start, path, zone)
        if is_unix_time(float(df["time_s"].iloc[-1])):
            raise FlytomoError(path, f"log_start {start} is given, but the log's {tcol} column holds dates or Unix "
                                     "times already: log_start is for a log that counts seconds from its own start")
        df["time_s"] += zero
    df.attrs["naive_times"] = naive
    return df


def log_start_s(start: str | float, path: Path, zone: Any = None) -> tuple[float, bool]:
    """A log's start (:func:`read_temperature_log`'s ``start``) → (Unix seconds, whether it was
    a date-time without a zone read as UTC); anything else raises :class:`FlytomoError` naming
    ``path``, the log it was given for."""
    text = str(start).strip()
    seconds, naive = _times_s(pd.Series([start if isinstance(start, (int, float)) else text]), "", path, zone)
    if not (math.isfinite(seconds[0]) and is_unix_time(float(seconds[0]))):
        raise FlytomoError(path, f"log_start {text!r} is not a date-time (2024-03-14 09:58:10, with its zone: "
                                 "+01:00) or Unix seconds")
    return float(seconds[0]), naive


def _zone(timezone: str | None, path: Path) -> Any:
    """:func:`recon.io.metadata.parse_zone` of ``timezone`` (None: None), its ValueError a
    FlytomoError naming ``path``, the file whose times it was to read."""
    if timezone is None:
        return None
    try:
        return parse_zone(timezone)
    except ValueError as err:
        raise FlytomoError(path, str(err)) from None


def clock_zone_warning(log_naive: bool, scans_naive: list[str], scans_absolute: bool, log_path: object) -> str | None:
    """The line to warn where date-times written without a zone (read as UTC) meet times that
    carry theirs, else None: the log's against scans' Unix or zoned times (``log_naive``,
    ``scans_absolute``), or ``scans_naive`` (their names) against a log with zones or Unix
    times. Both without a zone: one clock, nothing to say. (A timezone given: nothing read as
    UTC, so both are False here.)"""
    fix = ("set timezone: in the experiment config (flytomo init/analyze --timezone): an offset (+01:00) or a region "
           "(Europe/Berlin) for local time, or UTC to say they are UTC")
    if log_naive and scans_absolute and not scans_naive:
        return (f"{log_path}: the log's date-times carry no time zone and are read as UTC, while the scans record "
                f"Unix times or zoned dates: if the logger wrote local time, every temperature is read hours off; "
                f"{fix}")
    if scans_naive and not log_naive:
        more = f" (+{len(scans_naive) - 1} more)" if len(scans_naive) > 1 else ""
        return (f"{scans_naive[0]}{more}: the scans' start times are date-times without a time zone, read as UTC, "
                f"while the times of the log {log_path} carry their zone or are Unix times: if the beamline's clock "
                f"wrote local time, every temperature is read hours off; {fix}")
    return None


#: names of a scan list's file column (compared as column keys)
FILE_NAMES = ("file", "filename", "file_name", "scan", "scan_file", "name", "volume", "path")


#: names of a scan list's duration column (compared as column keys; seconds, or a unit in brackets)
DURATION_NAMES = ("duration_s", "duration", "scan_duration_s", "scan_duration", "length_s")


def read_scan_list(path: str | Path, timezone: str | None = None) -> pd.DataFrame:
    """A list of volume files with their times and/or temperatures → DataFrame (file,
    time_s, duration_s, temperature_C; NaN where a column is absent; ``attrs["naive_times"]``
    as :func:`read_temperature_log`'s), for volumes made elsewhere. The file column is ``file``
    (or filename, scan, name, volume, path), matched to the files by name or stem; the time
    and temperature columns are read as :func:`read_temperature_log` reads them (names, units,
    dates, decimal commas), and at least one of them is needed. The time is the scan's start
    where a ``duration_s`` column (or duration, scan_duration_s) gives its length, else the
    time its temperature is read at."""
    path = Path(path)
    if not path.is_file():
        raise FlytomoError(path, "no such scan list")
    try:
        df = pd.read_csv(path, comment="#", sep=None, engine="python", skipinitialspace=True, index_col=False,
                         encoding="utf-8-sig", dtype=str)
    except Exception as err:
        raise FlytomoError(path, f"cannot read the scan list as CSV ({err})") from None
    df.columns = [str(c).strip() for c in df.columns]
    fcol = _pick(list(df.columns), FILE_NAMES)
    dcol = _pick(list(df.columns), DURATION_NAMES, taken=fcol)
    tcol = _pick([c for c in df.columns if c != dcol], TIME_NAMES, taken=fcol)
    ccol = _temperature_column([c for c in df.columns if c != dcol], tcol)
    if fcol is None or (tcol is None and ccol is None):
        raise FlytomoError(path, f"a scan list needs a file column and a time or temperature column; found "
                                 f"{', '.join(df.columns) or 'none'}")
    out = pd.DataFrame({"file": df[fcol].astype(str).str.strip()})
    times, naive = _times_s(df[tcol], _column_key(tcol)[1], path, _zone(timezone, path)) if tcol else (np.nan, False)
    out["time_s"] = times
    out["duration_s"] = (_numbers(df[dcol]).to_numpy(float) * _TIME_UNITS.get(_column_key(dcol)[1], 1.0)
                         if dcol else np.nan)
    if dcol and (wrong := np.flatnonzero(df[dcol].fillna("").str.strip().ne("") & ~(out["duration_s"] >= 0))).size:
        raise FlytomoError(path, f"line {int(wrong[0]) + 2}: {dcol} must be a duration ≥ 0 "
                                 f"(got {df[dcol].iloc[wrong[0]]!r})")
    out["temperature_C"] = _celsius(df[ccol], ccol, path) if ccol else np.nan
    out.attrs["naive_times"] = naive
    bad = out["file"].eq("") | (out[["time_s", "temperature_C"]].isna().all(axis=1))
    if bad.any():
        raise FlytomoError(path, f"line {int(np.flatnonzero(bad)[0]) + 2}: a file name and a time or temperature "
                                 "are needed on every line")
    return out


def scan_list_rows(listed: pd.DataFrame) -> dict[str, Any]:
    """The rows of a scan list (:func:`read_scan_list`) by the name and the stem of their file: a
    file is matched by either (``scan_0007.h5`` or ``scan_0007``)."""
    rows = {}
    for row in listed.itertuples(index=False):
        rows[Path(row.file).name] = rows[Path(row.file).stem] = row
    return rows


def _scan_frame(scans: list[dict]) -> pd.DataFrame:
    rows = []
    for i, s in enumerate(scans):
        start, mid, dur = scan_times(s)
        if mid is None:
            mid = start
        if start is None:
            start = mid
        t = s.get("temperature_C")
        rows.append({
            "scan_index": int(s.get("index", i)),
            "scan_id": str(s.get("scan_id", s.get("index", i))),
            "file": Path(str(s["file"])).name if s.get("file") else "",
            "start_time_s": np.nan if start is None else float(start),
            # the same as a date a spreadsheet shows (Unix times only; an experiment clock: empty)
            "start_time_utc": _utc_text(start),
            "mid_time_s": np.nan if mid is None else float(mid),
            "duration_s": np.nan if dur is None else float(dur),
            "temperature_C": np.nan if t is None else float(t),
        })
    return pd.DataFrame(rows)


def _utc_text(start: float | None) -> str:
    """A Unix time as the date a spreadsheet shows (ISO, UTC, ms); "" for an experiment clock, or
    a time past the year 9999 (a store written before scan times in Unix ms were read as such)."""
    if start is None or not is_unix_time(float(start)):
        return ""
    try:
        return datetime.fromtimestamp(float(start), timezone.utc).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        return ""


def shared_start_text(names: list[str], starts_s: np.ndarray) -> str | None:
    """A message where two or more scans record the same start time (as where a beamline writes
    the experiment's start into every file: the files do not tell when each scan was taken),
    else None. ``names``: the scans' names, ``starts_s``: their start times (NaN: none)."""
    by_time: dict[float, list[str]] = {}
    for name, t in zip(names, starts_s):
        if math.isfinite(t):
            by_time.setdefault(float(t), []).append(str(name))
    shared = [group for group in by_time.values() if len(group) > 1]
    if not shared:
        return None
    n = sum(len(group) for group in shared)
    return (f"{n} scans record a start time another scan records too (e.g. {shared[0][0]} and {shared[0][1]}): "
            "the files do not tell when each scan was taken, so the temperature log cannot be read at them; "
            "analyse without the log (temperature_log: null, or flytomo analyze -T none) against the scan order")


def scan_temperatures(scans: list[dict], log: pd.DataFrame | None = None,
                      log_path: str | Path | None = None, extrapolate: bool = False) -> pd.DataFrame:
    """Scan times and temperatures: DataFrame with scan_index, scan_id, start_time_s,
    mid_time_s, duration_s, temperature_C, heating_rate_C_per_min (one row per scan).

    With a ``log`` (from :func:`read_temperature_log`) the temperatures come from it (see the
    module docstring). Without one, ``temperature_C`` comes from the scan metadata (NaN where
    absent) and the rate from the finite differences between scans.
    """
    df = _scan_frame(scans)
    mid = df["mid_time_s"].to_numpy(float)
    if log is None:
        temp = df["temperature_C"].to_numpy(float)
        df["temperature_from"] = np.where(np.isfinite(temp), TEMPERATURE_FROM["file"], TEMPERATURE_FROM["none"])
        rate = np.full(len(df), np.nan)
        ok = np.isfinite(temp) & np.isfinite(mid)
        if ok.sum() >= 2:
            order = np.argsort(mid[ok])
            tm, tt = mid[ok][order], temp[ok][order]
            if np.all(np.diff(tm) > 0):
                r = np.gradient(tt, tm) * 60.0
                out = np.empty_like(r)
                out[order] = r
                rate[ok] = out
                warnings.warn("no temperature log: each heating rate is the slope between the neighbouring "
                              "scans' recorded temperatures, averaged over minutes (a hold next to a ramp "
                              "reads as part of it); give the log (--temperature) for the rate during each scan",
                              UserWarning, stacklevel=2)
        df["heating_rate_C_per_min"] = rate
        df["temperature_min_C"] = df["temperature_max_C"] = np.nan  # one reading a scan: no range
        return df

    done = np.array([s.get("status", "done") == "done" for s in scans], dtype=bool)
    if not np.isfinite(mid[done]).all():  # a scan not reconstructed (unreadable) may have none: its row is marked
        i = int(np.flatnonzero(~np.isfinite(mid) & done)[0])
        raise FlytomoError(log_path or "temperature log",
                           f"scan {df['scan_id'][i]} (index {df['scan_index'][i]}) has no time in its file, "
                           "so it cannot be placed on the temperature log; analyse without the log "
                           "(flytomo analyze -T none: temperatures from the files, else the scan order) "
                           "or use files that record scan times")
    shared = shared_start_text(list(df["scan_id"]), df["start_time_s"].to_numpy(float))
    if shared:
        raise FlytomoError(log_path or "temperature log", shared)
    lt = log["time_s"].to_numpy(float)
    lT = log["temperature_C"].to_numpy(float)
    dur = df["duration_s"].to_numpy(float)
    # the scan window the rate is averaged over; without a duration: the median scan spacing
    timed = np.sort(mid[np.isfinite(mid)])
    spacing = float(np.median(np.diff(timed))) if len(timed) > 1 else math.nan
    default_d = spacing if math.isfinite(spacing) and spacing > 0 else float(np.median(np.diff(lt)))
    timed_d = np.isfinite(dur) & (dur > 0)
    d = np.where(timed_d, dur, default_d)
    a, b = mid - d / 2, mid + d / 2
    start = df["start_time_s"].to_numpy(float)
    # without a duration, mid is the start (a lone scan: no spacing to take one from): the window
    # begins there, not half a guess before it (a scan starting with the log fell outside it)
    a = np.where(timed_d | ~np.isfinite(start), a, np.fmax(a, start))
    lo = np.fmin(a, start)
    hi = np.fmax(b, np.where(np.isfinite(dur), start + dur, b))
    eps = 1e-9 * max(1.0, abs(lt[-1]))
    outside = (lo < lt[0] - eps) | (hi > lt[-1] + eps)
    # a scan not reconstructed keeps the time its file records, but outside the log it gets no
    # temperature rather than stop the analysis of the others
    stray = outside & ~done
    outside &= done
    if extrapolate and ((hi < lt[0] - eps) | (lo > lt[-1] + eps)).all():
        raise FlytomoError(
            log_path or "temperature log",
            f"no scan falls inside the temperature log (the scans run {_span_text(lo.min(), hi.max())}, the log "
            f"{_span_text(lt[0], lt[-1])}): extrapolating would give every scan the log's end value")
    pending = past_log_end(lo, hi, lt[0], lt[-1]) if not extrapolate else np.zeros(outside.shape, bool)
    if pending.any():
        ids = [str(v) for v in df["scan_id"][pending]]
        warnings.warn(f"{log_path or 'temperature log'}: {len(ids)} newest scan(s) ({', '.join(ids[:5])}"
                      f"{' ...' if len(ids) > 5 else ''}) end after its last reading: their temperatures are left "
                      f"empty, marked '{TEMPERATURE_FROM['pending']}', until the log covers them (analyse again), or "
                      "--extrapolate holds its last value", UserWarning, stacklevel=2)
        outside = outside & ~pending
    if outside.any() and not extrapolate:
        i = int(np.flatnonzero(outside)[0])
        more = int(outside.sum()) - 1
        raise FlytomoError(
            log_path or "temperature log",
            outside_log_text(f"{df['scan_id'][i]} (index {df['scan_index'][i]})", lo[i], hi[i], lt[0], lt[-1])
            + (f" ({more} more scan(s) outside the log)" if more else "")
            + "; use a log that spans the experiment, or --extrapolate to hold its end values")
    if outside.any():  # extrapolate: said, with the scans it holds the log's end values for
        ids = [str(v) for v in df["scan_id"][outside]]
        warnings.warn(f"{log_path or 'temperature log'}: {len(ids)} scan(s) outside the log ("
                      f"{', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}) take its first or last reading "
                      "(--extrapolate)", UserWarning, stacklevel=2)
    df["temperature_C"] = np.interp(mid, lt, lT)
    df["temperature_from"] = np.where(outside, TEMPERATURE_FROM["held"], TEMPERATURE_FROM["log"])
    gap_text, in_gap = _gap_text(lt, lo, hi, list(df["scan_id"]))
    if gap_text is not None:
        warnings.warn(f"{log_path or 'temperature log'}: {gap_text}", UserWarning, stacklevel=2)
        df.loc[in_gap & ~outside, "temperature_from"] = TEMPERATURE_FROM["gap"]
    width = np.maximum(d, RATE_MIN_SAMPLES * float(np.median(np.diff(lt))))
    df["heating_rate_C_per_min"] = [_slope(lt, lT, m, w) * 60.0 if math.isfinite(m) else math.nan
                                     for m, w in zip(mid, width)]
    # what the sample went through during the scan (blind probe AG: a 90-s scan at 50 °C/min spans 75 °C,
    # and the table gave only its middle)
    span = np.array([_range(lt, lT, x, y) for x, y in zip(a, b)]).reshape(-1, 2)
    df["temperature_min_C"], df["temperature_max_C"] = span[:, 0], span[:, 1]
    df.loc[pending | stray, ["temperature_C", "heating_rate_C_per_min", "temperature_min_C", "temperature_max_C"]] = np.nan
    df.loc[stray, "temperature_from"] = TEMPERATURE_FROM["none"]
    df.loc[pending, "temperature_from"] = TEMPERATURE_FROM["pending"]
    df.loc[~np.isfinite(mid), "temperature_from"] = TEMPERATURE_FROM["none"]
    return df


#: a log interval this many times its median step (and at least LOG_GAP_MIN_S) is a gap
LOG_GAP_STEPS = 10.0
LOG_GAP_MIN_S = 60.0


def _gap_text(lt: np.ndarray, lo: np.ndarray, hi: np.ndarray, ids: list) -> tuple[str | None, np.ndarray]:
    """(Words for the scans whose window [lo, hi] (s) overlaps a gap of the log's times ``lt``
    (an interval over LOG_GAP_STEPS median steps and LOG_GAP_MIN_S: a logger stopped, or its clock
    jumped forward), else None: their temperatures are interpolated across it; (scan,) bool:
    those scans)."""
    steps = np.diff(lt)
    in_gap = np.zeros(len(ids), dtype=bool)
    if steps.size < 2:
        return None, in_gap
    big = np.flatnonzero(steps > max(LOG_GAP_STEPS * float(np.median(steps)), LOG_GAP_MIN_S))
    if big.size == 0:
        return None, in_gap
    hit = [(i, int(g)) for i in range(len(ids)) for g in big if lo[i] < lt[g + 1] and hi[i] > lt[g]]
    if not hit:
        return None, in_gap
    in_gap[[i for i, _ in hit]] = True
    scans = list(dict.fromkeys(str(ids[i]) for i, _ in hit))
    g = max((g for _, g in hit), key=lambda k: steps[k])
    return (f"{len(scans)} scan(s) ({', '.join(scans[:5])}{' ...' if len(scans) > 5 else ''}) fall in a gap of the log "
            f"with no readings for {steps[g] / 60:.0f} min ({_span_text(lt[g], lt[g + 1])}; it reads every "
            f"{float(np.median(steps)):g} s elsewhere): their temperatures are interpolated across it (a logger "
            f"stopped, or its clock jumped forward?), marked '{TEMPERATURE_FROM['gap']}' in the table"), in_gap


#: the rate window spans at least this many log intervals (a scan shorter than that would
#: make the rate mostly sensor noise)
RATE_MIN_SAMPLES = 5


def _range(lt: np.ndarray, lT: np.ndarray, a: float, b: float) -> tuple[float, float]:
    """(lowest, highest) temperature of the log over the scan's window [a, b] (s): its readings
    inside and its values at the ends (held beyond the log's); NaNs where the window is unknown."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.nan, math.nan
    inside = lT[(lt > a) & (lt < b)]
    ends = np.interp([a, b], lt, lT)
    values = np.concatenate([ends, inside])
    return float(values.min()), float(values.max())


def _slope(lt: np.ndarray, lT: np.ndarray, mid: float, width: float) -> float:
    """Least-squares slope (°C/s) of the log over [mid − width/2, mid + width/2] ∩ the log:
    the log's readings inside plus its interpolated values at the window's ends."""
    a, b = max(mid - width / 2, lt[0]), min(mid + width / 2, lt[-1])
    if not b > a:
        return 0.0
    inside = (lt > a) & (lt < b)
    ts = np.concatenate([[a], lt[inside], [b]])
    Ts = np.concatenate([[np.interp(a, lt, lT)], lT[inside], [np.interp(b, lt, lT)]])
    tc = ts - ts.mean()
    return float(np.sum(tc * (Ts - Ts.mean())) / np.sum(tc * tc))


def build_table(times: pd.DataFrame, results: list[dict]) -> pd.DataFrame:
    """Join per-scan times/temperatures (:func:`scan_temperatures`) with the per-time-point
    results (dicts from :func:`analysis.run.analyze_time_point`, matched on ``scan_index``
    or ``t``) → the crack table with :data:`COLUMNS`."""
    res = pd.DataFrame([{k: v for k, v in r.items() if k != "slice"} for r in results])
    if "scan_index" not in res.columns:
        res["scan_index"] = res["t"]
    keep = ["scan_index", "particle_volume_vox", "crack_volume_vox", "pore_volume_vox",
            "crack_fraction", "pore_fraction", "n_cracks", "n_pores", "speck_fraction", "edge_sigma_px",
            "ring_fraction", "other_particles", "status"]
    for k in keep:
        if k not in res.columns:
            res[k] = np.nan
    df = times.drop(columns=[c for c in keep[1:] if c in times.columns]).merge(
        res[keep], on="scan_index", how="left")
    df["status"] = df["status"].fillna("not analysed")
    measured = df["status"] == "ok"  # other rows hold no measurement: blank, not 0 (probe AE: n_cracks 0 read as one)
    for k in ("particle_volume_vox", "crack_volume_vox", "pore_volume_vox", "n_cracks", "n_pores",
              "other_particles"):
        df[k] = df[k].astype(float).where(measured).astype("Int64")
    for k in ("crack_fraction", "pore_fraction", "speck_fraction", "edge_sigma_px", "ring_fraction"):
        df[k] = df[k].astype(float).where(measured)
    # the time plot's axis: mid-scan minutes from the first scan's start (Unix times, shown in start_time_utc)
    # or from the experiment clock's 0 (blind probe AG: start_time_s in Unix seconds read as elapsed)
    origin, _ = clock_origin(df["start_time_s"].to_numpy(float))
    df["elapsed_min"] = (df["mid_time_s"].astype(float) - origin) / 60.0
    return df.sort_values("scan_index").reset_index(drop=True)[COLUMNS]


def atomic_write(path: str | Path, write) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``: never a half-written file there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_table(df: pd.DataFrame, out_dir: str | Path, stem: str = "crack_table") -> tuple[Path, Path]:
    """Write ``stem.csv`` and ``stem.parquet`` into ``out_dir`` atomically; returns both paths.
    The CSV keeps 8 significant digits, the scan times to the millisecond; Parquet keeps
    ``start_time_utc`` as a UTC timestamp (null where the scans have no Unix time)."""
    out_dir = Path(out_dir)
    text = df.copy()
    for col in ("start_time_s", "mid_time_s"):  # Unix times need 13 digits to keep milliseconds
        if col in text:
            text[col] = [None if np.isnan(t) else f"{t:.3f}" for t in text[col].to_numpy(float)]
    csv = atomic_write(out_dir / f"{stem}.csv", lambda p: text.to_csv(p, index=False, float_format="%.8g"))
    typed = df.copy()
    if "start_time_utc" in typed:  # a timestamp (UTC) in Parquet, null where there is none, as the CSV's empty cell
        typed["start_time_utc"] = pd.to_datetime(typed["start_time_utc"].replace("", None), utc=True, format="ISO8601")
    pq = atomic_write(out_dir / f"{stem}.parquet", lambda p: typed.to_parquet(p, index=False))
    return csv, pq
