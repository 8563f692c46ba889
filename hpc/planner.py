"""Work units of an experiment, and the survey of its scans that the plan is built on.

A work unit is (scan index t, rows z0:z1): the engine reconstructs rows z0:z1 of scan t and
writes them to the store chunk (t, z0:z1) — chunks are (1, rows_per_chunk, ny, nx), so units
and chunks coincide and no two workers ever write the same chunk.

:func:`survey_scans` opens every scan (metadata only; with ``center: auto`` it also reads a
few middle rows), so the driver knows each scan's geometry, times and temperature before
any unit runs. A scan that cannot be opened is kept in the survey with its reason: its
units fail, the others run.
"""
from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from recon.errors import FlytomoError
from recon.io.metadata import AssumptionWarning, as_float, localize_naive, parse_zone
from recon.io.preprocess import Corrections


@dataclass(frozen=True, order=True)
class WorkUnit:
    """Rows z0:z1 of scan t (0-based, z1 exclusive)."""

    t: int
    z0: int
    z1: int

    @property
    def name(self) -> str:
        """The manifest marker name, ``t{t:05d}_z{z0:05d}``."""
        return f"t{self.t:05d}_z{self.z0:05d}"

    @property
    def rows(self) -> int:
        return self.z1 - self.z0


def row_ranges(n_rows: int, rows_per_chunk: int) -> list[tuple[int, int]]:
    """[(z0, z1), ...] covering 0:n_rows in steps of ``rows_per_chunk`` (the last may be shorter)."""
    if n_rows < 1 or rows_per_chunk < 1:
        raise FlytomoError(None, f"cannot plan {n_rows} rows in chunks of {rows_per_chunk}")
    return [(z0, min(z0 + rows_per_chunk, n_rows)) for z0 in range(0, n_rows, rows_per_chunk)]


def plan_units(n_scans: int, n_rows: int, rows_per_chunk: int,
               scans: Iterable[int] | None = None) -> list[WorkUnit]:
    """Every unit of ``scans`` (default all ``n_scans``), scan-major: n_scans × ⌈n_rows / rows_per_chunk⌉."""
    ranges = row_ranges(n_rows, rows_per_chunk)
    ts = range(n_scans) if scans is None else sorted(set(int(t) for t in scans))
    return [WorkUnit(t, z0, z1) for t in ts for z0, z1 in ranges]


@dataclass
class ScanPlan:
    """What the driver knows about scan ``index`` before reconstructing it.

    ``shape`` = (n_angles, n_rows, n_columns); times in seconds on the experiment clock
    (the temperature log's); ``geometry`` a :class:`recon.geometry.ScanGeometry` or None when
    the scan could not be opened (``error`` says why).
    """

    index: int
    path: Path
    scan_id: str
    shape: tuple[int, int, int] | None = None
    start_time_s: float | None = None
    duration_s: float | None = None
    temperature_C: float | None = None
    geometry: Any = None
    error: str | None = None
    metadata: dict = field(default_factory=dict)
    jitter: Any = None  # recon.io.alignment.Jitter where the config asks to correct it
    tilt: Any = None  # recon.io.alignment.Tilt likewise
    pad_reused: bool = False  # the pad came from the store of an earlier run (never changed)
    fingerprint: str | None = None  # :func:`file_fingerprint` of its file when surveyed
    pad_wanted: int = 0  # the pad (columns per side) the scan chose alone, before :func:`_pad_alike`
    photons: float | None = None  # per pixel in a flat frame (:func:`recon.io.noise.scan_photons`)
    start_time_naive: bool = False  # its start a date-time without a zone, read as UTC (no timezone given)
    waiting: bool = False  # still being written (``error`` says why): left to a later run, not a failure

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def mid_time_s(self) -> float | None:
        if self.start_time_s is None:
            return None
        return self.start_time_s + (self.duration_s or 0.0) / 2.0

    def to_attrs(self, base: Path | None = None, status: str = "pending") -> dict:
        """The per-scan entry of the store's ``flytomo.scans`` (docs/architecture.md)."""
        f = str(self.path)
        if base is not None:
            try:
                f = str(self.path.resolve().relative_to(base.resolve()))
            except ValueError:
                pass
        out = {
            "index": self.index, "scan_id": self.scan_id, "file": f,
            "start_time_s": self.start_time_s, "mid_time_s": self.mid_time_s,
            "duration_s": self.duration_s, "temperature_C": self.temperature_C,
            "geometry": None if self.geometry is None else self.geometry.to_dict(),
            "status": status, "fingerprint": self.fingerprint,
        }
        if self.jitter is not None:
            out["jitter"] = self.jitter.to_dict()
        if self.tilt is not None:
            out["tilt"] = self.tilt.to_dict()
        if self.error:
            out["error"] = self.error
        if self.start_time_naive:
            out["start_time_naive"] = True
        return out


#: a scan with fewer projections than this share of the experiment's median count is short
SHORT_SCAN_SHARE = 0.9
#: a short scan whose file was written this recently (s) may still be being written
RECENT_WRITE_S = 120.0


def angle_span(angles_deg: np.ndarray) -> float:
    """Degrees a scan's recorded angles cover: their range and one median step (a scan still being
    written covers part of what the finished ones do; one with fewer, wider steps the same)."""
    a = np.sort(np.asarray(angles_deg, dtype=np.float64).ravel())
    if a.size < 2:
        return 0.0
    return float(a[-1] - a[0] + np.median(np.diff(a)))


def file_age_s(path: Path | str) -> float:
    """Seconds since a scan's file (of ``FILE::ENTRY``, the file) was last written; inf where it
    cannot be read."""
    from recon.io.readers import split_scan_ref

    try:
        return max(0.0, time.time() - split_scan_ref(path)[0].stat().st_mtime)
    except OSError:
        return float("inf")


def unlit_tail_problem(age: float) -> str:
    """Why a scan whose last projections hold no light, written ``age`` s ago (under
    :data:`RECENT_WRITE_S`), is left to a later run: a detector that writes its file at full size
    first and fills the frames as they come (probe AE: such a scan failed where a growing one waited)."""
    return (f"its last projections hold no light and its file was written {age:.0f} s ago: a scan still being "
            "written? not reconstructed now; a run once it is complete takes it")


def short_scan_problem(path: Path, n_angles: int, typical: float, span: float | None = None,
                       typical_span: float | None = None) -> tuple[str, bool] | None:
    """(problem, still being written?) of a scan of ``n_angles`` projections where the
    experiment's scans hold ``typical`` (their median); None where it holds at least
    SHORT_SCAN_SHARE of that, or where its angles cover (``span``, :func:`angle_span`) at least
    SHORT_SCAN_SHARE of the turn the others' do (``typical_span``): fewer projections over the same
    turn are a scan made with other settings, not one cut short (blind probe V: a complete 90-frame
    half turn among 120-frame ones failed as "still being written"). Still being written: its file
    changed in the last RECENT_WRITE_S s (a blind probe's scan picked up at 70 of 120 frames was
    reconstructed as a 105° scan and its crack fraction tabled 'ok'; the finished file then refused
    every later run)."""
    if typical <= 0 or n_angles >= SHORT_SCAN_SHARE * typical:
        return None
    if span is not None and typical_span and span >= SHORT_SCAN_SHARE * typical_span:
        return None
    age = file_age_s(path)
    held = f"holds {n_angles} projections where the experiment's scans hold {typical:g}"
    if age < RECENT_WRITE_S:
        return (f"{held}, and its file was written {age:.0f} s ago: a scan still being written? not "
                f"reconstructed now; a run once it is complete takes it"), True
    return f"{held} (a scan cut short?): reconstructed from those", False


def _short_scans(plans: list[ScanPlan]) -> None:
    """Plans of scans still being written get an error (not reconstructed this run; the next run
    surveys them again); a short scan written earlier, a warning (:func:`short_scan_problem`)."""
    counts = [p.shape[0] for p in plans if p.ok and p.shape]
    if len(counts) < 2:
        return
    typical = float(np.median(counts))
    spans = {id(p): angle_span(p.geometry.angles_deg) for p in plans if p.ok and p.geometry is not None}
    typical_span = float(np.median(list(spans.values()))) if spans else None
    for p in plans:
        found = (short_scan_problem(p.path, p.shape[0], typical, spans.get(id(p)), typical_span)
                 if p.ok and p.shape else None)
        if found is None:
            continue
        if found[1]:
            p.error, p.waiting = found[0], True
        else:
            warnings.warn(f"{p.path.name}: {found[0]}", UserWarning, stacklevel=3)


#: bytes read at each of the places :func:`file_fingerprint` samples
FINGERPRINT_BLOCK = 1 << 16


def file_fingerprint(path: Path) -> str | None:
    """A short digest of a scan file: its size and 64 KiB at its start, its end and three places
    between (the same after a copy; different after the file is replaced, truncated or written
    further). None where the file cannot be read, and for one entry of a multi-entry file (a
    series file grows as its scans are written: the file's bytes do not tell one entry's)."""
    import hashlib

    from recon.io.readers import split_scan_ref

    file, entry = split_scan_ref(path)
    if entry is not None:
        return None
    try:
        size = file.stat().st_size
        h = hashlib.sha256(str(size).encode())
        with open(file, "rb") as fh:
            for at in sorted({0, size // 4, size // 2, 3 * size // 4, max(0, size - FINGERPRINT_BLOCK)}):
                fh.seek(at)
                h.update(fh.read(FINGERPRINT_BLOCK))
    except OSError:
        return None
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class SurveyJob:
    """One scan to survey (:func:`survey_scan`): its place and file, the config's overrides and
    repairs, and ``prev``, its entry in the store of an earlier run (centre, pad, jitter and
    tilt reused) or None."""

    index: int
    path: Path
    blur_angle_deg: float | None
    center: float | str | None
    prev: dict | None
    scan_duration_s: float | None
    corrections: Corrections | None
    pad_columns: int | str
    check_tilt: bool
    blur_matters: bool = False
    photons: bool = False  # measure the photons its flats hold (the rrdb method's dose check)
    reverse_rotation: bool = False  # the stage turns against the recorded angles (scan_geometry)
    timezone: str | None = None  # the clock of a start time written without a zone (config timezone)


def survey_scan(job: SurveyJob) -> tuple[ScanPlan, list[tuple[type[Warning], str]]]:
    """Open one scan and work out its geometry and times (:func:`survey_scans`), wherever it
    runs; the warnings it gave, as (category, message), in order. A scan that cannot be read
    comes back with ``error`` set, never raises."""
    from recon.io import open_scan
    from recon.io.alignment import Jitter, Tilt, estimate_jitter, estimate_tilt
    from recon.io.preprocess import unlit_frames
    from recon.io.readers import scan_label
    from recon.io.scan_geometry import scan_geometry

    f, prev, corrections = job.path, job.prev, job.corrections
    plan = ScanPlan(index=job.index, path=f, scan_id=scan_label(f), fingerprint=file_fingerprint(f))
    if prev and prev.get("fingerprint") not in (None, plan.fingerprint):
        prev = None  # another file under the same name: nothing of the earlier one's survey is reused
    reader = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            reader = open_scan(f)
            meta = dict(getattr(reader, "metadata", {}) or {})
            plan.metadata = {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool)) or v is None}
            plan.scan_id = str(meta["scan_id"]) if meta.get("scan_id") is not None else scan_label(f)
            plan.shape = tuple(int(s) for s in reader.shape)  # type: ignore[assignment]
            if (age := file_age_s(f)) < RECENT_WRITE_S and unlit_frames(reader).tail:
                plan.error, plan.waiting = unlit_tail_problem(age), True
                return plan, [(w.category, str(w.message)) for w in caught]
            _set_start(plan, meta, job.timezone)
            plan.duration_s = (float(job.scan_duration_s) if job.scan_duration_s is not None  # the user's word first
                               else as_float(meta.get("duration_s")))
            c, pad = job.center, job.pad_columns
            if job.center in ("auto", None) and prev and prev.get("geometry"):
                c = float(prev["geometry"]["center"])  # a resumed run keeps the centre it found
            if job.pad_columns == "auto" and prev and prev.get("geometry"):
                pad = int(prev["geometry"].get("pad_columns", 0))  # ... and the pad
                plan.pad_reused = True
            if corrections is not None and corrections.correct_tilt:
                plan.tilt = (Tilt.from_dict(prev["tilt"]) if prev and prev.get("tilt")
                             else estimate_tilt(reader, corrections=corrections))
            if corrections is not None and corrections.correct_jitter:
                plan.jitter = (Jitter.from_dict(prev["jitter"]) if prev and prev.get("jitter")
                               else estimate_jitter(reader, corrections=corrections, tilt=plan.tilt))
            plan.geometry = scan_geometry(reader, blur_angle_deg=job.blur_angle_deg, center=c,
                                          corrections=corrections, jitter=plan.jitter, tilt=plan.tilt,
                                          pad_columns=pad, check_tilt=job.check_tilt,
                                          blur_matters=job.blur_matters, reverse_rotation=job.reverse_rotation,
                                          check_center=isinstance(job.center, (int, float)) and prev is None)
            if job.photons:
                from recon.io.noise import scan_photons

                plan.photons = scan_photons(reader)
        except FlytomoError as err:
            plan.error = err.problem if err.where in (None, str(f)) else str(err)
        except Exception as err:  # a broken file must not stop the survey of the others
            plan.error = f"cannot be read ({type(err).__name__}: {err})"
        finally:
            if plan.error and plan.start_time_s is None:  # its row keeps the time the file records (probe AG)
                from recon.io.readers import recorded_start

                _set_start(plan, recorded_start(f), job.timezone)
            try:
                if reader is not None:
                    reader.close()
            except Exception:
                pass
    return plan, [(w.category, str(w.message)) for w in caught]


def _set_start(plan: ScanPlan, meta: dict, timezone: str | None) -> None:
    """``plan``'s start from a reader's ``scan_time`` (and ``scan_time_naive``): a naive date-time
    read on ``timezone``'s clock, or marked naive without one."""
    plan.start_time_s = as_float(meta.get("scan_time"))
    if meta.get("scan_time_naive") and plan.start_time_s is not None:
        if timezone is None:
            plan.start_time_naive = True
        else:
            plan.start_time_s = localize_naive(plan.start_time_s, parse_zone(timezone))


def _number_in_name(plan: ScanPlan) -> str | None:
    """The last number in the scan's file stem, without leading zeros ("scan_0057" → "57")."""
    from recon.io.readers import scan_label

    found = re.findall(r"\d+", scan_label(plan.path))
    return str(int(found[-1])) if found else None


def _ids_of_unread_scans(plans: list[ScanPlan]) -> None:
    """A scan that could not be read gets the number in its file's name as its id where every
    scan read records its id as that number (FXI's scan_0057.h5 holds scan_id 57), so that its
    row reads like the others (blind probe AB: "scan_0057" among 56, 58, ...)."""
    from recon.io.readers import scan_label

    read = [p for p in plans if p.geometry is not None]
    if not read or any(p.scan_id != _number_in_name(p) for p in read):
        return
    for p in plans:
        if p.geometry is None and p.scan_id == scan_label(p.path) and (n := _number_in_name(p)) is not None:
            p.scan_id = n


def _distinct_labels(plans: list[ScanPlan]) -> None:
    """Scans named by their file (no scan id recorded) whose names repeat (A/tomo.h5, B/tomo.h5)
    get their folder's name in front (A/tomo, B/tomo), so tables and plots tell them apart."""
    from collections import Counter

    from recon.io.readers import scan_label, split_scan_ref

    counts = Counter(p.scan_id for p in plans)
    for p in plans:
        if counts[p.scan_id] > 1 and p.scan_id == scan_label(p.path):
            p.scan_id = f"{split_scan_ref(p.path)[0].parent.name}/{p.scan_id}"


def _known_entry(known: list[dict] | None, index: int, file: Path) -> dict | None:
    """The earlier run's entry for scan ``index`` if it is of ``file``'s name, else None."""
    entry = next((s for s in known or [] if isinstance(s, dict) and s.get("index") == index), None)
    return entry if entry is not None and Path(str(entry.get("file", ""))).name == file.name else None


def survey_scans(files: Sequence[Path], *, blur_angle_deg: float | None = None,
                 center: float | str | None = None, log: tuple[np.ndarray, np.ndarray] | None = None,
                 known: list[dict] | None = None, scan_duration_s: float | None = None,
                 corrections: Corrections | None = None, pad_columns: int | str = "auto",
                 map_fn: Callable[[Callable, list], list] | None = None,
                 blur_matters: bool = False, photons: bool = False, reverse_rotation: bool = False,
                 timezone: str | None = None, listed: Any = None) -> list[ScanPlan]:
    """Open every scan file (metadata) and work out its geometry, times and temperature.
    ``blur_matters``: the method models the fly-scan blur (warn where it is only assumed);
    ``photons``: also measure each scan's photons per flat pixel (:attr:`ScanPlan.photons`);
    ``reverse_rotation``: every scan's angles taken as −θ (:func:`recon.io.scan_geometry.scan_geometry`);
    ``timezone``: the clock of start times written without a zone (:func:`recon.io.metadata.parse_zone`;
    None: read as UTC, and the plan says so: :attr:`ScanPlan.start_time_naive`).

    Parameters
    ----------
    files : scan files in experiment order (index t = position).
    blur_angle_deg, center : the config's overrides (``center="auto"`` or ``None``: found per
        scan from its middle rows, a centre the file records not read; ``"middle"``:
        (n_columns − 1)/2; see :func:`recon.io.scan_geometry.scan_geometry`).
    log : (time_s, temperature_C) arrays of the temperature log; the temperature of a scan
        is the log at mid-scan (start + duration/2).
    known : the store's scan entries from an earlier run (its ``flytomo.scans``); the entry at
        a scan's index, where it names a file of the same name, gives its center and pad (and
        jitter, tilt) again, so a resumed run reconstructs with the same geometry (by index:
        two scans of one name in two folders keep their own).
    scan_duration_s : the duration of every scan (config ``scan_duration_s``), over what the
        files record (:func:`recon.io.metadata.scan_duration_s`); without either, the median
        spacing of scan starts (scans back to back), with a warning where a log is given.
    corrections : the config's opt-in repairs, made to the rows the axis is found from too;
        with ``correct_tilt`` each scan's axis tilt is measured here
        (:func:`recon.io.alignment.estimate_tilt`), then with ``correct_jitter`` its jitter (one
        pass over its rows, :func:`recon.io.alignment.estimate_jitter`), before its axis is found.
    pad_columns : the config's pad for samples wider than the field (``"auto"``: per scan,
        :func:`recon.truncation.auto_pad`).
    map_fn : ``map(fn, items)`` in order (an executor's ``map``) to survey the scans on its
        workers — axis searches, and with ``correct_jitter`` a whole read of every scan, are the
        survey's cost; default: here, one after the other. Each scan's warnings are recorded
        where it is surveyed and given again here, in the scans' order; only the first scan
        is asked whether the axis leans (the lean is the instrument's). With ``pad_columns``
        "auto", every scan gets the largest pad any scan chose (one pad per experiment).
    listed : the config's scan list (:func:`analysis.table.read_scan_list`): a listed scan's start
        time and duration over what its file records, and its temperature where no log is given.
    """
    jobs = [SurveyJob(i, Path(f), blur_angle_deg, center, _known_entry(known, i, Path(f)), scan_duration_s,
                      corrections, pad_columns, check_tilt=(i == 0), blur_matters=blur_matters,
                      photons=photons, reverse_rotation=reverse_rotation, timezone=timezone)
            for i, f in enumerate(files)]
    results = map_fn(survey_scan, jobs) if map_fn is not None and len(jobs) > 1 else [survey_scan(j) for j in jobs]
    plans = [plan for plan, _ in results]
    _short_scans(plans)
    for plan, caught in results:
        if plan.waiting:  # a scan still being written: what its first frames say is no hint (probe AE: a 90° wedge)
            continue
        for category, message in caught:
            warnings.warn(message, category, stacklevel=2)
    if pad_columns == "auto":
        _pad_alike(plans)
    _ids_of_unread_scans(plans)
    _distinct_labels(plans)
    temperatures = _listed_times(plans, listed) if listed is not None else {}
    _fill_durations(plans, warn=log is not None, given=scan_duration_s)
    _warn_out_of_time_order(plans)
    _warn_name_order(plans)
    if log is not None:
        lt, lT = log[0], log[1]
        for p in plans:
            mid = p.mid_time_s
            if mid is not None:
                p.temperature_C = float(np.interp(mid, lt, lT))
    else:
        for p in plans:
            p.temperature_C = temperatures.get(p.index, as_float(p.metadata.get("temperature_C")))
    return plans


def _listed_times(plans: list[ScanPlan], listed: Any) -> dict[int, float]:
    """Each listed scan's start time and duration from the scan list ``listed`` (matched by file
    name or stem), over its file's; its temperature by scan index, where the list gives one."""
    from analysis.table import scan_list_rows

    rows = scan_list_rows(listed)
    naive = bool(listed.attrs.get("naive_times"))
    temperatures = {}
    for p in plans:
        row = rows.get(Path(p.path).name) or rows.get(Path(p.path).stem) or rows.get(p.scan_id)
        if row is None:
            continue
        if np.isfinite(row.time_s):
            p.start_time_s, p.start_time_naive = float(row.time_s), naive
        if np.isfinite(row.duration_s):
            p.duration_s = float(row.duration_s)
        if np.isfinite(row.temperature_C):
            temperatures[p.index] = float(row.temperature_C)
    return temperatures


def _pad_alike(plans: list[ScanPlan]) -> None:
    """One pad for every scan of an experiment: the largest any scan chose
    (:func:`recon.truncation.auto_pad`; over-padding costs less than under-padding), so that
    the time points are reconstructed alike and compare; a note where the scans differed.
    A resumed run keeps the pads in its store (units of those scans may be done): scans new to
    it take the largest of those."""
    surveyed = [p for p in plans if p.ok and p.geometry is not None]
    kept = [p.geometry.pad_columns for p in surveyed if p.pad_reused]
    pads = sorted({p.geometry.pad_columns for p in surveyed})
    if len(pads) < 2:
        return
    common = max(kept) if kept else pads[-1]
    for p in surveyed:
        if not p.pad_reused:
            p.pad_wanted = p.geometry.pad_columns
            p.geometry = p.geometry.with_pad(common)
    warnings.warn(f"the scans chose pads of {pads[0]}-{pads[-1]} columns per side (a sample wider than the field "
                  f"of view in some): every scan is padded by {common}, so that the time points are reconstructed "
                  "alike (pad_columns: in the experiment config to choose)", AssumptionWarning, stacklevel=3)


def _warn_out_of_time_order(plans: list[ScanPlan]) -> None:
    """One warning when a scan's recorded start comes before the one listed ahead of it: the
    experiment order (index t, the table's rows) is the list's, not the clock's."""
    timed = [p for p in plans if p.start_time_s is not None]
    back = [(a, b) for a, b in zip(timed, timed[1:]) if b.start_time_s < a.start_time_s]
    if back:
        a, b = back[0]
        by_time = sorted(timed, key=lambda p: p.start_time_s)
        moved = sum(p is not q for p, q in zip(timed, by_time))
        more = f" ({moved} of {len(timed)} scans are not where time order would put them)" if moved > 2 else ""
        warnings.warn(f"{b.path.name} started {a.start_time_s - b.start_time_s:.0f} s before {a.path.name}, which is "
                      f"listed ahead of it{more}: the experiment keeps the order of the scan list (a glob: natural "
                      "name order); list the scans in time order if that is not what you meant", stacklevel=2)


def _warn_name_order(plans: list[ScanPlan]) -> None:
    """Where no scan records a time, so the list's order is all there is: one warning when the
    file names hold one number that counts the scans (distinct, consecutive once sorted; the
    last such) and the list does not follow it, as where a temperature in the names comes first
    (cathode_160C_0002 before cathode_40C_0001? natural order sorts by the first number)."""
    if len(plans) < 3 or any(p.start_time_s is not None for p in plans):
        return
    fields = [re.findall(r"\d+", p.path.stem) for p in plans]
    if len({len(f) for f in fields}) != 1 or len(fields[0]) < 2:
        return
    for k in range(len(fields[0]) - 1, -1, -1):
        values = [int(f[k]) for f in fields]
        if len(set(values)) == len(values) and max(values) - min(values) == len(values) - 1:
            if values != sorted(values):
                shown = ", ".join(str(v) for v in values[:8]) + (", …" if len(values) > 8 else "")
                warnings.warn(f"the scans record no times, so they are taken in the list's order (a glob: natural name "
                              f"order, by the first number that differs), in which the number that counts them "
                              f"(number {k + 1} of their names: {plans[0].path.name}) runs {shown}: if it is the "
                              "order they were taken in, list them in that order (scans: [...] in the config)",
                              AssumptionWarning, stacklevel=3)
            return


def start_spacing_s(plans: Sequence[ScanPlan]) -> float | None:
    """The median step (s) between the scans' recorded start times; None with fewer than two
    timed scans or a step that is not > 0."""
    starts = sorted(p.start_time_s for p in plans if p.start_time_s is not None)
    step = float(np.median(np.diff(starts))) if len(starts) > 1 else 0.0
    return step if step > 0 else None


#: how warnings name the config's duration of every scan
CONFIG_DURATION = "the config's scan_duration_s:"


def _fill_durations(plans: list[ScanPlan], warn: bool, given: float | None = None) -> None:
    """A scan whose file and config give no duration lasts the median spacing of the starts
    (scans back to back). ``warn``: say so (with a temperature
    log, where a 6 s fly-scan every 108 s would have its temperature read 51 s late); ``given``:
    the config's ``scan_duration_s``, named where it is longer than the spacing."""
    spacing = start_spacing_s(plans)
    if spacing is None:
        lone = [p for p in plans if p.duration_s is None and p.start_time_s is not None]
        if lone and warn:  # one timed scan: no spacing to take a duration from (probe N: said nothing)
            warnings.warn(f"{lone[0].path.name} records no duration and there is no other scan to take one from: "
                          "its temperature is read at its start; set scan_duration_s: in the config (flytomo init "
                          "--scan-duration S) to read it mid-scan", AssumptionWarning, stacklevel=3)
        return
    timed = sorted((p for p in plans if p.start_time_s is not None), key=lambda p: p.start_time_s)
    overlap = [(a, b) for a, b in zip(timed, timed[1:])
               if a.duration_s is not None and a.duration_s > 1.05 * (b.start_time_s - a.start_time_s) > 0]
    if overlap and warn and given is not None:  # the config's number, not the files' (probe W)
        a, b = overlap[0]
        warnings.warn(f"{CONFIG_DURATION} {given:.4g} s is longer than the {b.start_time_s - a.start_time_s:.4g} s "
                      f"from the start of {a.path.name} to that of {b.path.name}"
                      f"{f' ({len(overlap)} such scans)' if len(overlap) > 1 else ''}: each scan's temperature is "
                      f"read {given / 2:.4g} s after its start; set it to the seconds one scan takes",
                      AssumptionWarning, stacklevel=3)
    elif overlap and warn:
        a, b = overlap[0]
        warnings.warn(f"{a.path.name} records a duration of {a.duration_s:.4g} s, longer than the "
                      f"{b.start_time_s - a.start_time_s:.4g} s to the start of {b.path.name}"
                      f"{f' ({len(overlap)} such scans)' if len(overlap) > 1 else ''}: its temperature is read "
                      f"{a.duration_s / 2:.4g} s after its start; a duration in other units (ms)? set "
                      "scan_duration_s: in the config to the right value", AssumptionWarning, stacklevel=3)
    guessed = [p for p in plans if p.duration_s is None and p.start_time_s is not None]
    for p in guessed:
        p.duration_s = spacing
    if guessed and warn:
        warnings.warn(f"{len(guessed)} of {len(plans)} scans record no duration: each is taken to last the "
                      f"median spacing of the starts ({spacing:.4g} s: scans back to back), so its temperature is "
                      f"read {spacing / 2:.4g} s after its start; set scan_duration_s: in the config (flytomo init "
                      "--scan-duration S) if the scans are shorter", AssumptionWarning, stacklevel=3)


def shared_start_times(plans: Sequence[ScanPlan]) -> str | None:
    """:func:`analysis.table.shared_start_text` of the readable scans."""
    from analysis.table import shared_start_text

    ok = [p for p in plans if p.ok]
    return shared_start_text([p.path.name for p in ok],
                             np.array([np.nan if p.start_time_s is None else p.start_time_s for p in ok]))


def common_pixel_size(plans: Sequence[ScanPlan]) -> float | None:
    """The voxel size (nm) the readable scans' metadata agree on (within 0.1 %); None where
    a scan records none or they differ (a warning says so: the store then records none)."""
    sizes = [as_float(p.metadata.get("pixel_size_nm")) for p in plans if p.ok]
    if not sizes or any(s is None or not s > 0 for s in sizes):
        return None
    lo, hi = min(sizes), max(sizes)
    if hi > lo * 1.001:
        warnings.warn(f"the scans' pixel sizes differ ({lo:g} to {hi:g} nm): the store records no voxel size",
                      AssumptionWarning, stacklevel=2)
        return None
    return float(np.median(sizes))


def common_shape(plans: Sequence[ScanPlan], where: Any = None) -> tuple[int, int, int]:
    """(n_angles, n_rows, n_columns) shared by the readable scans; FlytomoError if none or mixed."""
    shapes = {p.shape[1:] for p in plans if p.ok and p.shape}
    if not shapes:
        errors = list(dict.fromkeys(p.error for p in plans))
        if len(errors) == 1 and len(plans) > 1:  # one reason for all (a center off the detector, say)
            raise FlytomoError(where, f"no scan could be opened: every one of the {len(plans)} says: {errors[0]}")
        reasons = "; ".join(f"{p.path.name}: {p.error}" for p in plans[:3])
        raise FlytomoError(where, f"no scan could be opened ({reasons})")
    if len(shapes) > 1:
        by_shape: dict[tuple, list[str]] = {}
        for p in plans:
            if p.ok and p.shape:
                by_shape.setdefault(p.shape[1:], []).append(p.path.name)
        desc = "; ".join(f"{r}×{c} rows×columns: {len(v)} scan(s), e.g. {v[0]}"
                         for (r, c), v in sorted(by_shape.items(), key=lambda kv: -len(kv[1])))
        raise FlytomoError(where, f"scans differ in detector size ({desc}); one experiment store needs one size")
    first = next(p for p in plans if p.ok)
    return first.shape  # type: ignore[return-value]
