"""Scan metadata as beamline files record it: numbers that may be strings, bytes, 0-d or
1-element arrays; pixel sizes with units; rotation angles in degrees or radians; start times
as seconds or dates; the blur angle."""
from __future__ import annotations

import math
import re
import warnings
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from recon.errors import FlytomoError
from recon.geometry import default_blur_angle
from recon.io._h5 import read_small

# nanometres per unit
_UNITS = {"": 1.0, "nm": 1.0, "nanometer": 1.0, "nanometre": 1.0, "um": 1e3, "µm": 1e3, "μm": 1e3,
          "micron": 1e3, "microns": 1e3, "micrometer": 1e3, "micrometre": 1e3, "mm": 1e6, "millimeter": 1e6,
          "millimetre": 1e6, "m": 1e9, "meter": 1e9, "metre": 1e9, "a": 0.1, "å": 0.1, "angstrom": 0.1, "pm": 1e-3}
# degrees per unit of a rotation angle
_ANGLE_UNITS = {"deg": 1.0, "degree": 1.0, "degrees": 1.0, "°": 1.0, "rad": 180.0 / math.pi,
                "radian": 180.0 / math.pi, "radians": 180.0 / math.pi, "mrad": 0.18 / math.pi}


class AssumptionWarning(UserWarning):
    """A scan file lacks something (angle units, dark or flat fields, angles) and flytomo
    assumed a stated default; the message names the file and the assumption."""


def assume(path: Path, message: str) -> None:
    """Warn (one line, naming the file) that a default was assumed for ``path``."""
    warnings.warn(f"{path}: {message}", AssumptionWarning, stacklevel=3)
_NUMBER_UNIT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\d\s]*)\s*$")


def as_text(value: Any) -> str | None:
    """A string from str, bytes, numpy bytes/str, or a 0-d / 1-element array of those."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace").strip("\x00").strip()
    if isinstance(value, (str, np.str_)):
        return str(value).strip()
    return None


def as_float(value: Any) -> float | None:
    """A finite float from a number, a numeric string/bytes, or the first element of an array."""
    if value is None:
        return None
    text = as_text(value)
    if text is not None:
        try:
            f = float(text)
        except ValueError:
            return None
    else:
        arr = np.asarray(value)
        if arr.size == 0 or not np.issubdtype(arr.dtype, np.number):
            return None
        f = float(arr.reshape(-1)[0])
    return f if math.isfinite(f) else None


def parse_pixel_size_nm(value: Any, units: Any = None) -> float | None:
    """Pixel size in nanometres from ``21.6``, ``"21.6nm"``, ``b"21.6 nm"``, ``"0.0216um"``…

    ``units`` (such as an HDF5 ``units`` attribute: "m", "um", b"nm") applies to a value that
    names no unit; a bare number without units is nanometres (the FXI convention), unless it is
    below 1 (no X-ray microscope has sub-nanometre pixels): micrometres, with a warning. A
    decimal comma ("21,6 nm") is read. None when unparseable.
    """
    text = as_text(value)
    if text is None:
        number = as_float(value)
        if number is None:
            return None
        text = repr(number)
    if text.count(",") == 1 and "." not in text:  # "21,6 nm": a decimal comma
        text = text.replace(",", ".")
    m = _NUMBER_UNIT.match(text)
    if not m:
        return None
    unit = m.group(2) or as_text(units) or ""
    factor = _UNITS.get(unit.lower())
    if factor is None:
        return None
    f = float(m.group(1)) * factor
    if not unit and 0 < f < 1:  # no pixel of an X-ray microscope is under a nanometre: micrometres
        warnings.warn(f"a pixel size of {m.group(1)} with no unit is below a nanometre: read as "
                      f"{m.group(1)} µm = {f * 1000:g} nm (give it a unit, e.g. '{f * 1000:g} nm')",
                      AssumptionWarning, stacklevel=2)
        f *= 1000.0
    return f if math.isfinite(f) and f > 0 else None


def dataset_pixel_size_nm(ds: object, default_units: str) -> float | None:
    """Pixel size in nm from a one-value dataset, by its ``units`` attribute (``default_units``
    when absent); None if ``ds`` is not such a dataset or the value cannot be read."""
    if not isinstance(ds, h5py.Dataset) or ds.size != 1:
        return None
    return parse_pixel_size_nm(ds[()], ds.attrs.get("units", default_units))


def angles_in_degrees(ds: h5py.Dataset, path: Path) -> np.ndarray:
    """Rotation angles (n,) float64 in degrees from the dataset ``ds``, by its ``units``
    attribute (degree/deg/°, rad/radian, mrad; text or bytes). Without units the values are
    degrees (the Data Exchange, FXI and NXtomo convention) unless they span more than 0 and at
    most 2π — no tomography turns only 6° — so they are radians, converted with a warning.
    FlytomoError for units that are not an angle."""
    values = read_small(ds, path).astype(np.float64).reshape(-1)
    unit = as_text(ds.attrs.get("units"))
    if unit:
        factor = _ANGLE_UNITS.get(unit.lower())
        if factor is None:
            raise FlytomoError(path, f"dataset '{ds.name}' has units '{unit}', expected degrees or radians")
        _check_units_fit(values, unit, factor, ds.name, path)
        return values * factor
    finite = values[np.isfinite(values)]
    span = float(finite.max() - finite.min()) if finite.size > 1 else 0.0
    if 0.0 < span <= 2.0 * math.pi * (1 + 1e-6):
        assume(path, f"'{ds.name}' has no units and spans {span:.3f}: taken as radians ({math.degrees(span):.1f}°)")
        return np.rad2deg(values)
    return values


#: the span (degrees) in which angles read in the other unit than labelled make a tomography
#: scan, for :func:`_check_units_fit`'s limited-angle refusal
LIMITED_SPAN_DEG = (90.0, 370.0)


def _check_units_fit(values: np.ndarray, unit: str, factor: float, name: str, path: Path) -> None:
    """FlytomoError where angles span a half or a whole turn (with or without the end angle,
    within 0.5 %; at least 10 angles) in the other unit than ``unit`` says: degrees labelled
    radians span 180 or 360 "rad" (28 or 57 turns), radians labelled degrees 3.14 or 6.28 "°"
    (no tomography turns 6°); likewise where they span LIMITED_SPAN_DEG in the other unit and
    make no scan in theirs: at most 2π "°", or fewer than 10 projections per half turn in "rad"."""
    finite = values[np.isfinite(values)]
    if finite.size < 10:
        return
    ordered = np.sort(finite)
    span = float(ordered[-1] - ordered[0])
    spans = (span, span + float(np.median(np.diff(ordered))))  # the end angle recorded, or left out
    if factor == 1.0:
        turns, other = (math.pi, 2 * math.pi), "radians"
    elif factor == _ANGLE_UNITS["rad"]:
        turns, other = (180.0, 360.0), "degrees"
    else:
        return
    for turn, word in zip(turns, ("half", "whole")):
        if any(abs(span - turn) <= 0.005 * turn for span in spans):
            raise FlytomoError(path, f"dataset '{name}' says its angles are in '{unit}' but they span {spans[0]:.4g}, "
                                     f"a {word} turn in {other}: correct its units attribute")
    # a limited-angle scan (blind probe O: 150 angles over 149°, either unit mislabelled)
    degrees = math.degrees(span) if factor == 1.0 else span  # the span read in the other unit, in degrees
    if not LIMITED_SPAN_DEG[0] <= degrees <= LIMITED_SPAN_DEG[1]:
        return
    if factor == 1.0 and span <= 2 * math.pi:
        said = f"{finite.size} projections over {span:.3g}° is no tomography scan"
    elif factor != 1.0 and finite.size / (span / math.pi) < 10:
        said = f"{finite.size} projections over {span / math.pi:.0f} half turns is no tomography scan"
    else:
        return
    raise FlytomoError(path, f"dataset '{name}' says its angles are in '{unit}' but they span {spans[0]:.4g}: {said}, "
                             f"{degrees:.0f}° in {other} is one: correct its units attribute")


#: date formats read besides ISO 8601 (naive: UTC): APS Data Exchange's, year-first with
#: slashes or dots, and C's ctime (SPEC, EPICS); day/month orders that could be read both ways are not
DATE_FORMATS = ("%b %d, %Y %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M:%S.%f", "%Y.%m.%d %H:%M:%S",
                "%a %b %d %H:%M:%S %Y")


#: unit-less times above this are Unix milliseconds (1e11 s is the year 5138; 1e11 ms, 1973),
#: or micro- or nanoseconds where they are above it even as milliseconds
UNIX_MS_MIN = 1e11


def unix_seconds_factor(typical: float) -> float:
    """The factor that turns unit-less times whose typical value is ``typical`` into seconds: 1,
    or 1e-3, 1e-6, 1e-9 for Unix milli-, micro- or nanoseconds (above :data:`UNIX_MS_MIN`)."""
    if not typical > UNIX_MS_MIN:
        return 1.0
    return next((f for f in (1e-3, 1e-6, 1e-9) if typical * f < UNIX_MS_MIN), 1e-9)


_OFFSET = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{1,2}):?(\d{2})?$")


def parse_zone(spec: str) -> tzinfo:
    """The clock of date-times written without a zone: "UTC", an offset ("+01:00", "-0500",
    "UTC+2") or a region of the tz database ("Europe/Berlin": its summer time too). ValueError
    with a one-line reason where ``spec`` is none of these."""
    text = str(spec).strip()
    if text.upper() in ("UTC", "GMT", "Z"):
        return timezone.utc
    if m := _OFFSET.match(text.upper()):
        sign, hours, minutes = m.group(1), int(m.group(2)), int(m.group(3) or 0)
        if hours > 14 or minutes > 59:
            raise ValueError(f"time zone offset {text!r} is out of range (-14:00 to +14:00)")
        delta = timedelta(hours=hours, minutes=minutes)
        return timezone(-delta if sign == "-" else delta)
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time zone {text!r} is not UTC, an offset (+01:00) or a tz-database region "
                         "(Europe/Berlin)") from None


def localize_naive(seconds: Any, zone: tzinfo) -> Any:
    """Unix seconds of date-times that were written without a zone and read as UTC (a float or
    an array), re-read as the wall clock of ``zone`` (:func:`parse_zone`): the true Unix
    seconds. A time that zone's clock skips or shows twice (summer time's change) is NaN."""
    import pandas as pd

    values = np.asarray(seconds, dtype=np.float64)
    if isinstance(zone, timezone):  # a fixed offset
        out = values - zone.utcoffset(None).total_seconds()
    else:
        wall = pd.to_datetime(values.ravel(), unit="s")
        local = wall.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
        out = np.where(local.isna(), np.nan, (local.tz_convert("UTC") - pd.Timestamp(0, tz="UTC")).total_seconds())
        out = out.reshape(values.shape)
    return float(out) if np.ndim(seconds) == 0 else out


def scan_time_fields(value: Any, where: Path | str | None = None) -> dict[str, Any]:
    """A reader's metadata for a scan's recorded start ``value``: ``scan_time`` (Unix or clock
    seconds, :func:`parse_time_s`), and ``scan_time_naive: True`` where it is a date-time
    without a zone (read as UTC; an experiment's ``timezone`` re-reads it)."""
    seconds, naive = _read_time(value, where, "start time")
    return {"scan_time": seconds, **({"scan_time_naive": True} if naive else {})}


def parse_time_s(value: Any, where: Path | str | None = None, what: str = "start time") -> float | None:
    """Scan start time in seconds: a number (epoch or experiment clock; Unix milli-, micro- or
    nanoseconds are taken as such: :func:`unix_seconds_factor`), the first element of an
    array, or a date string (ISO 8601 "2021-11-16 10:00:00", or one of :data:`DATE_FORMATS`,
    e.g. "May 29, 2019 19:20:21" as APS Data Exchange files write it; naive dates are taken as
    UTC). None where there is none, or (with a warning naming ``where``) where the text is not
    a date read here."""
    return _read_time(value, where, what)[0]


def _read_time(value: Any, where: Path | str | None, what: str) -> tuple[float | None, bool]:
    """(:func:`parse_time_s` of ``value``, whether it is a date-time without a zone, read as UTC)."""
    f = as_float(value)
    if f is not None:
        return f * unix_seconds_factor(f), False  # Unix ms, µs or ns as a detector's clock writes them
    text = as_text(value)
    if not text:
        return None, False
    text = text.strip()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        for fmt in DATE_FORMATS:
            try:
                when = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            if where is not None:
                assume(Path(where), f"{what} {text!r} is not a date flytomo reads (ISO 8601, "
                                    f"2024-05-02 09:00:00): the scan has no {'time' if what == 'start time' else what}")
            return None, False
    naive = when.tzinfo is None
    return (when.replace(tzinfo=timezone.utc) if naive else when).timestamp(), naive


def lookup(f: h5py.Group, *names: str) -> Any:
    """First of ``names`` found as an attribute of ``f`` or a (small) dataset; None if absent."""
    for name in names:
        if name in f.attrs:
            return f.attrs[name]
        obj = f.get(name)
        if isinstance(obj, h5py.Dataset) and obj.size <= 64:
            try:
                return obj[()]
            except (OSError, ValueError, TypeError):
                return None
    return None


def _first_found(f: h5py.Group | tuple[h5py.Group, ...], *names: str) -> Any:
    """:func:`lookup` of ``names`` in a group, or in groups in order (an NXtomo entry, then the
    file's root): the first value found, else None."""
    groups = f if isinstance(f, tuple) else (f,)
    return next((v for v in (lookup(g, *names) for g in groups) if v is not None), None)


def blur_metadata(f: h5py.Group | tuple[h5py.Group, ...]) -> tuple[float | None, bool]:
    """(blur angle in degrees or None, whether recorded angles are exposure *starts*).

    The blur is ``blur_angle_deg`` when recorded, else ``exposure_s × rotation_speed_deg_s``.
    Angles are exposure starts when the attribute/dataset ``angle_reference`` is "start".
    ``f``: a group, or groups looked in in order (an NXtomo entry, then the file's root).
    """
    blur = as_float(_first_found(f, "blur_angle_deg"))
    if blur is None:
        exposure = as_float(_first_found(f, "exposure_s"))
        speed = as_float(_first_found(f, "rotation_speed_deg_s"))
        if exposure is not None and speed is not None:
            blur = abs(exposure * speed)
    if blur is not None and blur < 0:
        blur = None
    reference = as_text(_first_found(f, "angle_reference")) or ""
    return blur, reference.lower() == "start"


def exposure_middles(f: h5py.Group | tuple[h5py.Group, ...], angles_deg: np.ndarray,
                     meta: dict[str, Any]) -> np.ndarray:
    """Recorded angles as exposure middles (DESIGN.md), noting the blur in ``meta``.

    Sets ``meta["blur_angle_deg"]`` when the file records the blur. When the file marks its
    angles as exposure starts, returns them shifted by Δθ/2 the way the stage turned (Δθ: the
    recorded blur, else the median angle step; the direction: the sign of the median step in
    the frames' order, so a scan turning backwards moves to lower angles) and sets
    ``meta["angle_shift_deg"]``; otherwise returns them unchanged.
    """
    blur, at_start = blur_metadata(f)
    if blur is not None:
        meta["blur_angle_deg"] = blur
    if not at_start or angles_deg.size == 0 or not np.all(np.isfinite(angles_deg)):
        return angles_deg
    step = blur if blur is not None else float(np.rad2deg(default_blur_angle(np.deg2rad(angles_deg))))
    turning = np.median(np.diff(angles_deg)) if angles_deg.size > 1 else 0.0
    shift = (-step if turning < 0 else step) / 2.0
    meta["angle_shift_deg"] = shift
    return angles_deg + shift


def scan_duration_s(f: h5py.Group | tuple[h5py.Group, ...], angles_deg: np.ndarray, start_s: float | None,
                    path: Path, end_names: tuple[str, ...] = ("end_time", "scan_end_time")) -> float | None:
    """How long the scan took (s) where the file says: ``scan_duration_s``; else its end time
    (``end_names``, as :func:`parse_time_s` reads them) less ``start_s``; else the angles
    turned over ``rotation_speed_deg_s``. None where it says nothing (or something negative)."""
    duration = as_float(_first_found(f, "scan_duration_s"))
    if duration is None and start_s is not None:
        end = parse_time_s(_first_found(f, *end_names), path, "end time")
        duration = None if end is None else end - start_s
    if duration is None:
        speed = as_float(_first_found(f, "rotation_speed_deg_s"))
        if speed and angles_deg.size > 1 and np.all(np.isfinite(angles_deg)):
            turned = float(np.ptp(angles_deg)) + float(np.median(np.abs(np.diff(angles_deg))))
            duration = turned / abs(speed)
    return duration if duration is not None and math.isfinite(duration) and duration >= 0 else None


def record_blur(f: h5py.File, blur_angle_deg: float | None) -> None:
    """Writers: mark angles as exposure middles and record the blur angle when known."""
    f.attrs["angle_reference"] = "middle"
    if blur_angle_deg is not None:
        f.attrs["blur_angle_deg"] = float(blur_angle_deg)
