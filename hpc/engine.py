"""Run a whole experiment: survey the scans, plan the units, run them on an executor, resume.

The driver (this module's :func:`run_experiment`, in the process that runs ``flytomo run``,
rank 0 under MPI):

1. takes the store's lock (a second concurrent run refuses to start);
2. reads the temperature log and opens every scan (metadata; bad input → exit 2 before any
   work, except single unreadable scans, which are reported as failed);
3. creates the store once, up front, marked incomplete — or checks that an existing one
   was made with the same plan (method, options, files, shape, chunks);
4. plans the units, drops those the manifest says are done, and hands the rest to the
   executor; each worker runs :func:`run_unit` — read rows, line integrals, reconstruct,
   write its chunk, then write its marker;
5. records failures (a rerun retries exactly those), updates each scan's status, and marks
   the store complete when every unit is done.

Exit codes of ``flytomo run``: 0 all units done, 1 some units failed (the others are on
disk; rerun to retry), 2 bad input before starting (config, log, no readable scan, store
made with other settings, store locked).
"""
from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import signal
import socket
import sys
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hpc.config import Experiment, few_iterations_problem, read_scan_list, read_temperature_log
from hpc.executors import Executor, make_executor, set_torch_threads
from hpc.executors.base import tune_malloc, worker_device
from hpc.manifest import META, Manifest, RunLock
from hpc.planner import (ScanPlan, WorkUnit, common_pixel_size, common_shape, plan_units, shared_start_times,
                         survey_scans)
from hpc import store as st
from recon.errors import NO_ROOM_ERRNOS, FlytomoError
from recon.io import release_read_bands
from recon.io.omezarr import even_time_step_s
from recon.io.preprocess import Corrections, DataHintWarning, DataRepairWarning

log = logging.getLogger("flytomo.run")

#: test hook: a worker process SIGKILLs itself after this many units (see _test_hook)
KILL_AFTER_ENV = "FLYTOMO_TEST_KILL_AFTER"
KILL_ONCE_ENV = "FLYTOMO_TEST_KILL_FLAG"
CACHE_SIZE = 4


# ───────────────────────────── the worker side ─────────────────────────────


@dataclass(frozen=True)
class UnitJob:
    """Everything a worker needs for one unit (small and picklable)."""

    unit: WorkUnit
    store: str
    scan_file: str
    geometry: dict
    method: str
    options: tuple          # sorted (name, value) pairs
    device: str = "cpu"
    threads: int | None = 1
    model_sha256: str | None = None  # rrdb: the network the plan recorded (checked on the worker)
    corrections: Corrections = Corrections()  # opt-in repairs of the line integrals
    jitter: dict | None = None  # the scan's projection shifts to undo (recon.io.alignment.Jitter.to_dict)
    tilt: dict | None = None  # the scan's axis tilt to undo (recon.io.alignment.Tilt.to_dict)
    fingerprint: str | None = None  # the scan file's when it was surveyed (hpc.planner.file_fingerprint)


@dataclass
class UnitResult:
    unit: WorkUnit
    ok: bool
    reason: str = ""
    seconds: float = 0.0
    build_seconds: float = 0.0
    worker: str = ""
    peak_rss_mb: float = 0.0
    warnings: tuple = ()  # (category name, message) pairs the unit raised, each once


#: warning categories a worker's warnings keep when the driver raises them again
_WARNING_CATEGORIES = {"DataRepairWarning": DataRepairWarning, "DataHintWarning": DataHintWarning}


_reconstructors: "OrderedDict[tuple, Any]" = OrderedDict()
_readers: "OrderedDict[tuple, Any]" = OrderedDict()
_units_run = 0


def reader_for(path: str) -> Any:
    """This process's reader of ``path`` (metadata parsed once; a changed file is reopened)."""
    from recon.io import open_scan
    from recon.io.readers import split_scan_ref

    st_ = os.stat(split_scan_ref(path)[0])
    key = (path, st_.st_mtime_ns, st_.st_size)
    r = _readers.get(key)
    if r is None:
        r = _readers[key] = open_scan(path)
        while len(_readers) > 8:
            _readers.popitem(last=False)
    return r


def _peak_rss_mb() -> float:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    except Exception:  # pragma: no cover
        return 0.0


def reconstructor_for(geometry: dict, method: str, options: tuple, device: str,
                      model_sha256: str | None = None) -> tuple[Any, float]:
    """This process's reconstructor for (geometry, method, options, device, network), built
    at most once.

    Returns (reconstructor, seconds spent building it now — 0 when cached). At most
    ``CACHE_SIZE`` are kept (least recently used dropped), so memory stays bounded when
    every scan has its own geometry. ``model_sha256``: the weights the run planned with; a
    network that loads with another checksum (the file changed under the run, or a worker
    node sees another file at that path) raises FlytomoError.
    """
    from recon.geometry import ScanGeometry
    from recon.methods import make_reconstructor, network_key

    g = ScanGeometry.from_dict(geometry)
    key = (g.key(), method, options, device, model_sha256)
    rec = _reconstructors.get(key)
    if rec is not None:
        _reconstructors.move_to_end(key)
        return rec, 0.0
    t0 = time.perf_counter()
    opts = dict(options)
    judged = _zoom_judge(key, opts) if method == "rrdb" else None
    if judged is not None and isinstance(opts.get("zoom"), (int, float)) and not isinstance(opts["zoom"], bool):
        rec = judged.with_zoom(opts["zoom"])  # its operators, the networks for this zoom
    else:
        rec = make_reconstructor(g, method, device, **opts)
    if model_sha256 is not None and rec.model is not None:
        got = network_key(rec.provenance())
        if got != model_sha256:
            raise FlytomoError(rec.model.path, f"network weights changed since the run was planned "
                                               f"(sha256 {got[:12]}…, planned {model_sha256[:12]}…)")
    _reconstructors[key] = rec
    while len(_reconstructors) > CACHE_SIZE:
        _reconstructors.popitem(last=False)
    return rec, time.perf_counter() - t0


def _zoom_judge(key: tuple, opts: dict) -> Any:
    """The kept reconstructor (zoom auto) that judged a scan's network zoom for the reconstructor
    of ``key`` with ``opts``: the same geometry, method, device and options but the zoom; else None."""
    geometry, method, _, device, _ = key

    def rest(options: dict) -> dict:
        return {k: v for k, v in options.items() if k != "zoom"}

    for (g, m, o, d, _), rec in _reconstructors.items():
        if (g, m, d) == (geometry, method, device) and dict(o).get("zoom") == "auto" and rest(dict(o)) == rest(opts):
            return rec
    return None


def cache_info() -> int:
    """How many reconstructors this process holds (for tests)."""
    return len(_reconstructors)


def _test_hook() -> None:
    """SIGKILL this process after ``$FLYTOMO_TEST_KILL_AFTER`` units (tests of resume).

    With ``$FLYTOMO_TEST_KILL_FLAG`` set to a path, only the first process to get there
    dies (it creates the file first): a single worker death in a run.
    """
    k = os.environ.get(KILL_AFTER_ENV)
    if not k or _units_run < int(k):
        return
    flag = os.environ.get(KILL_ONCE_ENV)
    if flag:
        try:
            os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)


def run_unit(job: UnitJob) -> UnitResult:
    """Reconstruct one unit and write it: read rows z0:z1 → line integrals → volume → chunk → marker.

    Never raises: a failure comes back as ``UnitResult(ok=False, reason=...)`` (one line).
    Warnings (a repaired dead column, say) come back in ``UnitResult.warnings`` for the driver
    to raise where the command line shows them once: a Dask worker process would print each
    raw, once per chunk.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _run_unit(job)
    result.warnings = tuple(dict.fromkeys((w.category.__name__, str(w.message)) for w in caught))
    return result


def _same_scan(job: UnitJob) -> None:
    """FlytomoError where the unit's scan file is not the one the run surveyed (its geometry and
    axis are that file's): a blind probe replaced a scan mid-run, and it was reconstructed with the
    old file's axis, 'done', the table 'ok'. The unit fails; the next run surveys the file again
    (or, where units of it were done from the old file, refuses the mix)."""
    from hpc.planner import file_fingerprint

    if job.fingerprint is not None and file_fingerprint(Path(job.scan_file)) != job.fingerprint:
        raise FlytomoError(job.scan_file, "changed since this run surveyed it (its bytes differ: replaced, or written "
                                          "further?): not reconstructed; the next run surveys it again")


def _room_for_unit(store: str, n_bytes: int) -> None:
    """OSError (ENOSPC, EFBIG) where ``n_bytes`` of a unit's volume cannot be written under
    ``store``: its disk has less free, or this process's file-size limit is lower. Asked before
    the unit is reconstructed: a blind probe's full disk had every remaining unit computed, then
    lost at its write (an allocation's worth of work)."""
    import resource

    free = shutil.disk_usage(store).free
    if free < n_bytes:
        raise OSError(errno.ENOSPC, f"No space left on device ({_megabytes(free)} free, a unit writes up to "
                                    f"{_megabytes(n_bytes)}; not reconstructed)")
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and limit < n_bytes:
        raise OSError(errno.EFBIG, f"File too large (the file-size limit is {_megabytes(limit)}, a unit writes up "
                                   f"to {_megabytes(n_bytes)}; not reconstructed)")


def _megabytes(n: int) -> str:
    """``n`` bytes in MB, with a decimal below 10 MB (a small unit read "0 MB")."""
    return f"{n / 1e6:.0f} MB" if n >= 10e6 else f"{n / 1e6:.2g} MB"


def _run_unit(job: UnitJob) -> UnitResult:
    global _units_run
    from recon.io.alignment import Jitter, Tilt, read_line_integrals

    u = job.unit
    worker = f"{socket.gethostname()}:{os.getpid()}"
    t0 = time.perf_counter()
    build = 0.0
    try:
        _, _, ny, nx = st.open_array(Path(job.store), "r").shape  # the store's slices: the field, no padding
        _room_for_unit(job.store, (u.z1 - u.z0) * ny * nx * 4)  # float32, before any work
        set_torch_threads(job.threads)
        tune_malloc()
        device = worker_device(job.device)
        rec, build = reconstructor_for(job.geometry, job.method, job.options, device,
                                       job.model_sha256)
        _same_scan(job)
        got = read_line_integrals(reader_for(job.scan_file), u.z0, u.z1, corrections=job.corrections,
                                  jitter=Jitter.from_dict(job.jitter), tilt=Tilt.from_dict(job.tilt),
                                  columns=False, noise=rec.uses_variance)  # dx: in the geometry
        _same_scan(job)  # not replaced while its rows were read
        stopped: list[int] = []  # MLEM's iterations per slice
        zoomed: list[float] = []  # the rrdb method's network zoom per slice
        vol = rec(*got, stopped=stopped) if rec.uses_variance else rec(got, stopped=stopped, zoomed=zoomed)
        st.write_unit(Path(job.store), u.t, u.z0, vol)
        seconds = time.perf_counter() - t0
        record = {"t": u.t, "z0": u.z0, "z1": u.z1, "seconds": seconds, "build_seconds": build, "worker": worker}
        if stopped:
            record["iterations"] = stopped
        if zoomed:
            record["zoom"] = zoomed
        Manifest(job.store).mark_done(u.name, record)
    except FlytomoError as err:
        return UnitResult(u, False, str(err), time.perf_counter() - t0, build, worker, _peak_rss_mb())
    except OSError as err:
        if err.errno in NO_ROOM_ERRNOS:  # the store's disk, not the scan
            msg = f"writing {job.store}: {err.strerror}; make room and run again"
        else:
            msg = _one_line(err)
        return UnitResult(u, False, msg, time.perf_counter() - t0, build, worker, _peak_rss_mb())
    except Exception as err:  # any other failure of this unit: reported, the run goes on
        msg = _one_line(err)
        return UnitResult(u, False, msg, time.perf_counter() - t0, build, worker, _peak_rss_mb())
    _units_run += 1
    _test_hook()
    return UnitResult(u, True, "", seconds, build, worker, _peak_rss_mb())


def _one_line(err: BaseException) -> str:
    """An exception as one line of a run's report: ``Type: message``, whitespace collapsed."""
    return " ".join(f"{type(err).__name__}: {err}".split())


def zoom_probe(job: UnitJob) -> tuple[Any, tuple[int, int], str]:
    """Worker side of a series' one network zoom: :func:`recon.methods.judge_scan_zoom` of
    ``job``'s scan over ``job.unit``'s rows, read as :func:`run_unit` reads them (the choice, or
    None: nothing to choose; the rows judged), and "" (or, where the scan could not be judged,
    (None, (0, 0), the error in one line)); nothing is written."""
    try:
        return (*_judge_zoom(job), "")
    except Exception as err:  # this scan's units will meet it and say so; the others judge the series
        return None, (0, 0), _one_line(err)


def _judge_zoom(job: UnitJob) -> tuple[Any, tuple[int, int]]:
    from recon.io.alignment import Jitter, Tilt
    from recon.methods import judge_scan_zoom

    set_torch_threads(job.threads)
    rec, _ = reconstructor_for(job.geometry, job.method, job.options, worker_device(job.device), job.model_sha256)
    return judge_scan_zoom(rec, reader_for(job.scan_file), job.unit.z0, job.unit.z1, corrections=job.corrections,
                           jitter=Jitter.from_dict(job.jitter), tilt=Tilt.from_dict(job.tilt))


# ───────────────────────────── the driver side ─────────────────────────────


@dataclass
class RunSummary:
    """What a run did; ``exit_code`` 0 (all done), 1 (some units failed) or 3 (none failed, but
    scans still being written were left to a later run: a polling pipeline's normal case)."""

    store: Path
    log_file: Path
    executor: str
    total: int = 0
    skipped: int = 0          # done before this run
    done: int = 0             # done by this run
    failed: int = 0
    rows: int = 0             # slices reconstructed by this run
    wall_s: float = 0.0
    units_wall_s: float = 0.0  # from handing out the first unit to the last result
    unit_seconds: list[float] = field(default_factory=list)
    build_seconds: float = 0.0
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)     # unit name → reason
    failed_scans: dict[str, str] = field(default_factory=dict)  # file name → reason
    waiting_scans: dict[str, str] = field(default_factory=dict)  # file name → why taken as still being written
    complete: bool = False
    axis: str | None = None   # the scans' rotation axes, in words (:func:`_axis_words`)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 3 if self.waiting_scans else 0

    @property
    def slices_per_s(self) -> float:
        return self.rows / self.wall_s if self.wall_s > 0 else 0.0

    def lines(self) -> list[str]:
        out = [
            f"store      {self.store}  ({'complete' if self.complete else 'INCOMPLETE'})",
            f"executor   {self.executor}",
            f"units      {self.total} total: {self.done} done now, {self.skipped} already done, "
            f"{self.failed} failed",
            f"time       {self.wall_s:.1f} s wall, {self.rows} slices, {self.slices_per_s:.2f} slices/s",
            *([f"axis       {self.axis}"] if self.axis else []),
            f"run log    {self.log_file}",
        ]
        if self.failed_scans:
            out.append(f"failed     {len(self.failed_scans)} scan(s) ({self.failed} units); "
                       f"rerun {same_command()} to retry only these:")
            for f, reason in sorted(self.failed_scans.items()):  # a reason that names its file as it is
                out.append(f"  {reason}" if Path(reason.split(": ", 1)[0]).name == f else f"  {f}: {reason}")
        if self.waiting_scans:
            out.append(f"waiting    {len(self.waiting_scans)} scan(s) still being written, left to the next run "
                       "(exit 3 where nothing failed):")
            out.extend(f"  {f}: {why}" for f, why in sorted(self.waiting_scans.items()))
        return out

    def to_dict(self) -> dict:
        return {"store": str(self.store), "executor": self.executor, "total": self.total,
                "skipped": self.skipped, "done": self.done, "failed": self.failed, "rows": self.rows,
                "wall_s": self.wall_s, "units_wall_s": self.units_wall_s,
                "slices_per_s": self.slices_per_s, "sum_unit_s": float(np.sum(self.unit_seconds)),
                "mean_unit_s": float(np.mean(self.unit_seconds)) if self.unit_seconds else 0.0,
                "build_seconds": self.build_seconds, "peak_rss_mb": self.peak_rss_mb,
                "failures": self.failures, "failed_scans": self.failed_scans,
                "waiting_scans": self.waiting_scans, "complete": self.complete,
                "axis": self.axis}


def _axis_how(center: float | str | None) -> str:
    return "given" if isinstance(center, (int, float)) else "the middle" if center == "middle" else "found per scan"


def _log_axes(plans: list[ScanPlan], center: float | str | None, to_do: set[int]) -> None:
    """The rotation axis and pad of each readable scan with units to do (index in ``to_do``)
    into the run log: a scan done in an earlier run was logged then (blind probe AB: a polled
    300-scan experiment logged 300 such lines on every run)."""
    for p in plans:
        if p.ok and p.geometry is not None and p.index in to_do:
            log.info("scan %s: rotation axis at column %.2f (%s), %d columns padded per side", p.path.name,
                     p.geometry.center, _axis_how(center), p.geometry.pad_columns)


def _axis_words(plans: list[ScanPlan], center: float | str | None) -> str | None:
    """The summary's words for the scans' rotation axes: one column, or their range across the
    scans (blind probe O: a drifting axis was seen only in the store's attributes)."""
    got = [p for p in plans if p.ok and p.geometry is not None]
    how = _axis_how(center)
    if not got:
        return None
    columns = [p.geometry.center for p in got]
    lo, hi = min(columns), max(columns)
    where = f"column {lo:.2f}" if hi - lo < 0.005 else f"columns {lo:.2f} to {hi:.2f}"
    return f"{where} ({how}{f', {len(got)} scans, each in the run log' if len(got) > 1 else ''})"


def run_log_path(store: Path) -> Path:
    stem = store.name[:-5] if store.name.endswith(".zarr") else store.name
    return store.parent / f"{stem}_run.log"


def _file_logger(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    h = logging.FileHandler(path)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False
    return h


def _plan_signature(exp: Experiment, shape: tuple, files: list[Path], options: dict,
                    model: dict | None = None) -> dict:
    """What must match for a run to resume a store (hpc.store.PLAN_KEYS). ``model``: the
    networks of method rrdb (:func:`recon.methods.model_provenance`); their checksums and
    blend weight (:func:`recon.methods.network_key`) are in the plan, so a store begun with one
    network is never finished with another (a retrained file at the same path, or a new shipped
    default after an upgrade)."""
    from recon.methods import network_key

    r = exp.config.reconstruction
    return {"shape": list(shape), "rows_per_chunk": exp.config.rows_per_chunk, "method": r.method,
            "options": options, "files": [f.name for f in files], "center": r.center,
            "blur_angle_deg": r.blur_angle_deg, "pad_columns": r.pad_columns,
            "model": network_key(model), **r.corrections().to_dict(),
            **({"reverse_rotation": True} if r.reverse_rotation else {})}


def resumable(store: Path, existing: dict, plan_sig: dict, config: Path) -> int:
    """How many scans this run appends to the existing ``store`` (0: the same scans); FlytomoError
    where the store was made with other settings or other scan files than ``config``'s plan
    ``plan_sig`` (:func:`_plan_signature`). ``existing``: the store's ``flytomo`` attribute."""
    diff = st.plan_mismatch(existing, plan_sig)
    added = st.appended_scans(existing, plan_sig) if diff else 0
    if diff and not added and "files" in diff and set(diff) <= {"files", "shape"}:
        raise FlytomoError(store, (
            f"holds other scan files than {config.name} names now "
            f"({st.files_changed_text(existing, plan_sig)}): only scans that sort after the last one it "
            "holds are appended; use another output, or 'flytomo run --restart' to reconstruct them all"))
    if diff and not added:
        raise FlytomoError(store, (
            f"was made with other settings than {config.name} ({st.plan_mismatch_text(existing, plan_sig)}); "
            "use another output, or 'flytomo run --restart' to discard it"))
    return added


def store_problem(exp: Experiment, files: list[Path], detector: tuple[int, int]) -> str | None:
    """What ``flytomo run`` would refuse in ``exp``'s existing store before any work (a store made
    with other settings or other scans, or a scan file changed since it was reconstructed into
    it), in one line; None where the run can go on (also where there is no store yet).
    ``files``: the scan files the config names; ``detector``: their (rows, columns)."""
    store = exp.store_path
    if not st.store_exists(store):
        return None
    if (busy := RunLock(store).held_elsewhere()) is not None:
        return f"{store}: {busy}"
    existing = st.read_attrs(store)
    cfg = exp.config
    method = cfg.reconstruction.method
    try:
        from recon.methods import model_provenance

        options = exp.method_options()
        resolved = _resolved_options(method, options)
        if method == "rrdb" and resolved.get("zoom") == "auto":  # the networks the store's series zoom chose
            options = {**options, **kept_zoom(existing)}
        model = model_provenance(method, _resolved_options(method, options), detector[1])
        n_rows, n_cols = detector
        plan_sig = _plan_signature(exp, (len(files), n_rows, n_cols, n_cols), files, resolved, model)
        resumable(store, existing, plan_sig, exp.path)
        from hpc.planner import file_fingerprint

        known = [s for s in existing.get("scans", []) if isinstance(s, dict)]
        _refuse_changed_scans([(i, f, file_fingerprint(f)) for i, f in enumerate(files)], known,
                              plan_units(len(files), n_rows, cfg.rows_per_chunk), Manifest(store).done(), store)
    except FlytomoError as err:
        return f"{err.where}: {err.problem}" if err.where else err.problem
    return None


def store_outlook(exp: Experiment, n_files: int) -> str:
    """What ``flytomo run`` would do with ``exp``'s store, in words for ``flytomo check``: made
    new, finished (nothing to do), resumed (units done of all), or grown by appended scans.
    Call only where :func:`store_problem` found nothing to refuse."""
    store = exp.store_path
    if not st.store_exists(store):
        return "new store"
    plan = dict(st.read_attrs(store).get("plan") or {})
    held = len(plan.get("files") or [])
    n_rows = int((plan.get("shape") or [0, 0])[1])
    units = plan_units(held, n_rows, int(plan.get("rows_per_chunk") or exp.config.rows_per_chunk))
    done = Manifest(store).done()
    n_done = sum(u.name in done for u in units)
    if n_files > held:  # a run appends them (and finishes any unit of the others still to do)
        rest = "" if n_done == len(units) else f"; {len(units) - n_done} unit(s) of those still to do"
        return f"exists, {n_done} of {len(units)} units done: a run appends {n_files - held} new scan(s) to its {held}{rest}"
    if n_done == len(units) and units:
        return "exists, finished: a run does nothing"
    return f"exists, resumed: {n_done} of {len(units)} units done"


def _warn(line: str) -> None:
    """A warning of the run: in its log and, as ``warning: LINE``, on the command line."""
    log.warning("%s", line)
    print(f"warning: {line}", file=sys.stderr)


def _dose_line(method: str, options: dict, image_size: int, plans: list[ScanPlan]) -> str | None:
    """One line for the scans whose photons lie far outside what the rrdb method's networks
    were trained on (:func:`recon.methods.dose_warnings`), else None."""
    from recon.methods import dose_warnings

    words = dose_warnings(method, options, image_size, [p.photons for p in plans])
    far = [(p, w) for p, w in zip(plans, words) if w]
    if not far:
        return None
    names = ", ".join(p.scan_id for p, _ in far[:3]) + (", …" if len(far) > 3 else "")
    return f"{len(far)} of {len(plans)} scans ({names}): {'; '.join(far[0][1])}"


def _refuse_changed_scans(scans: list[tuple[int, Path, str | None]], known: list[dict], units: list[WorkUnit],
                          done: set[str] | dict, store: Path) -> None:
    """FlytomoError naming the first scan file whose bytes changed (:func:`hpc.planner.file_fingerprint`)
    since units of it were reconstructed into ``store``: a replaced or truncated file would leave
    a volume of the old data, or of both (a resumed scan), under the new file's times.
    ``scans``: (index, path, fingerprint now) of each scan of the plan."""
    recorded = {s.get("index"): s.get("fingerprint") for s in known}  # the files' names match: the plan did
    started = {u.t for u in units if u.name in done}
    changed = [path for t, path, fp in scans if t in started and recorded.get(t) not in (None, fp)]
    if changed:
        more = f" (+{len(changed) - 1} more)" if len(changed) > 1 else ""
        raise FlytomoError(changed[0], f"changed since it was reconstructed into {store.name}{more} (its bytes "
                                            "differ from those recorded then): restore it, 'flytomo run "
                                            f"--redo {changed[0].name}' to reconstruct it again, or --restart for "
                                            "every scan")


def redo_indices(files: list[Path], names: Sequence[str], config: Path) -> set[int]:
    """The indices of the scans ``flytomo run --redo NAME`` names: a file's name (``scan_0007.h5``),
    its stem, or its path as the config's scans give it; FlytomoError for a name no scan has."""
    found: set[int] = set()
    for name in names:
        hits = {i for i, f in enumerate(files) if name in (f.name, Path(str(f)).stem, str(f))
                or Path(name).resolve() == Path(str(f)).resolve()}
        if not hits:
            shown = ", ".join(f.name for f in files[:4]) + (", ..." if len(files) > 4 else "")
            raise FlytomoError(config, f"--redo {name}: no scan of this experiment has that name ({shown})")
        found |= hits
    return found


def _fail_wider_new_scans(new: list[ScanPlan], store: Path) -> None:
    """A scan to be appended (or redone) that needs more padding than the store's scans had (a
    sample grown wider than the field; or flats at another beam, which read as one) fails, with a
    warning, and the others go on: padded as they were, it would be reconstructed worse than the
    store made of all scans at once would have it (blind probe V: one such scan had refused the
    whole run, the scans after it not reconstructed either)."""
    for p in new:
        if p.ok and p.geometry is not None and p.pad_wanted > p.geometry.pad_columns:
            p.error = (f"needs {p.pad_wanted} columns of padding per side (a sample wider than the field of view, or "
                       f"flats at another beam) where the scans in {store.name} were padded by "
                       f"{p.geometry.pad_columns}: not reconstructed; 'flytomo run --restart' reconstructs every scan "
                       "with the pad it needs")
            _warn(f"{p.path.name}: {p.error}")


def _resolved_options(method: str, options: dict) -> dict:
    from recon.methods import resolve_options

    try:
        return resolve_options(method, options)
    except FlytomoError as err:
        raise FlytomoError("reconstruction", err.problem) from None


#: seconds between the progress lines of a run whose stderr is a log file (a Slurm job, nohup)
PROGRESS_LINE_S = 60.0


class ProgressLines:
    """The progress of a run whose stderr is no terminal (a Slurm job's log, nohup): a line when it
    begins and then at most one every :data:`PROGRESS_LINE_S` seconds, with the units done of all,
    the failed, the time so far and an estimate of the time left. Has tqdm's ``update``,
    ``set_postfix`` and ``close``."""

    def __init__(self, total: int, initial: int) -> None:
        self.total, self.n, self.first, self.failed = total, initial, initial, 0
        self.t0 = self.last = time.monotonic()
        print(f"reconstruct: {total} units, {initial} already done", file=sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= PROGRESS_LINE_S and self.n < self.total:
            self.last = now
            print(f"reconstruct: {self.line(now)}", file=sys.stderr, flush=True)

    def line(self, now: float) -> str:
        """'N of M units done (P %), F failed, S s so far, about L s left' (L where units were done)."""
        spent = now - self.t0
        here = self.n - self.first
        left = f", about {spent / here * (self.total - self.n):.0f} s left" if here else ""
        return (f"{self.n} of {self.total} units done ({100 * self.n / max(self.total, 1):.0f} %), "
                f"{self.failed} failed, {spent:.0f} s so far{left}")

    def set_postfix(self, failed: int = 0, refresh: bool = False) -> None:
        self.failed = failed

    def close(self) -> None:
        pass


def _progress(total: int, initial: int, enabled: bool):
    """A progress bar on a terminal, :class:`ProgressLines` in a log file; a disabled bar where
    not ``enabled`` (``--no-progress``)."""
    from tqdm import tqdm

    if enabled and not sys.stderr.isatty():
        return ProgressLines(total, initial)
    return tqdm(total=total, initial=initial, unit="unit", disable=(not enabled) or None, dynamic_ncols=True,
                desc="reconstruct", file=sys.stderr, smoothing=0.1)


def run_experiment(exp: Experiment, executor: Executor | None = None, *, restart: bool = False,
                   progress: bool = True, command: str | None = None,
                   on_start: Callable[[str], None] | None = None, analysis_follows: bool = False,
                   redo: Sequence[str] = ()) -> RunSummary:
    """Reconstruct every unit of ``exp`` not yet done; see the module docstring.

    ``executor``: default :func:`hpc.executors.make_executor` from the config (closed at the
    end; a given one is left open). ``restart``: discard an existing store first. ``redo``: scans
    (:func:`redo_indices`) surveyed anew (axis, fingerprint) and reconstructed again into the
    existing store, the others kept (a scan file restored or replaced since it was reconstructed).
    ``analysis_follows``: the analysis runs after: a temperature log it cannot use (scans
    outside it without ``extrapolate``, scans sharing one start time) is an error before any
    work, not a failure hours later.
    Raises :class:`FlytomoError` for bad input before any unit runs.
    """
    cfg = exp.config
    store = exp.store_path
    command = command or " ".join(sys.argv)
    store.parent.mkdir(parents=True, exist_ok=True)
    new_store = not store.exists()
    lock = RunLock(store, command).acquire()
    handler = _file_logger(run_log_path(store))
    own_executor = executor is None
    t_start = time.perf_counter()
    try:
        log.info("start: %s (pid %d on %s)", command, os.getpid(), socket.gethostname())
        if not new_store and (n_stale := st.remove_stale_temporaries(store)):
            log.info("removed %d temporary file(s) that writers killed mid-write left in the store", n_stale)
        if restart and store.exists():
            log.info("--restart: removing the existing store %s", store)
            # in an order a stop at any point leaves safe: no unit marked done first, then the
            # analysis of the volumes to be removed (a table beside them would look current), the
            # arrays, and the group's own metadata last (so what is left still reads as a store)
            Manifest(store).reset()
            try:
                from analysis.run import remove_analysis
            except ImportError:
                pass
            else:
                remove_analysis(exp.analysis_out)
            entries = sorted((p for p in store.iterdir() if p.name != META), key=lambda p: p.name.startswith("."))
            for p in entries:  # the arrays, then .zattrs / .zgroup
                shutil.rmtree(p) if p.is_dir() else p.unlink()

        # -- inputs: every problem here is exit 2, before any work
        files = exp.scan_files()
        if not files:
            raise FlytomoError(exp.path, f"scans: no file matches {cfg.scans!r}")
        again = redo_indices(files, redo, exp.path)
        temp_log = read_temperature_log(exp.temperature_log, cfg.timezone, cfg.temperature_log_start) if exp.temperature_log else None
        listed = read_scan_list(exp.scan_list, cfg.timezone) if exp.scan_list else None
        method, options = cfg.reconstruction.method, exp.method_options()
        resolved = _resolved_options(method, options)
        from recon.methods import model_provenance, uses_blur

        model_provenance(method, resolved)  # the networks load, checked before any scan is opened
        existing = st.read_attrs(store)
        known = [s for s in existing.get("scans", []) if isinstance(s, dict)]
        if again and not st.store_exists(store):
            again = set()  # a new store: every scan is reconstructed
        corrections = cfg.reconstruction.corrections()
        if executor is None:
            executor = make_executor(cfg.executor)
        plans = survey_scans(files, blur_angle_deg=cfg.reconstruction.blur_angle_deg,
                             blur_matters=uses_blur(method, resolved), photons=method == "rrdb",
                             center=cfg.reconstruction.center, log=temp_log,
                             known=[k for k in known if k.get("index") not in again],
                             scan_duration_s=cfg.scan_duration_s, corrections=corrections,
                             pad_columns=cfg.reconstruction.pad_columns, map_fn=executor.map,
                             reverse_rotation=cfg.reconstruction.reverse_rotation, timezone=cfg.timezone,
                             listed=listed)
        axis = _axis_words(plans, cfg.reconstruction.center)
        unusable, to_warn = log_problems(plans, temp_log, cfg.analysis.extrapolate, exp.temperature_log)
        for line in to_warn:  # first: a clock warning may say why a scan lies outside the log
            _warn(line)
        if analysis_follows and unusable:
            raise FlytomoError(exp.temperature_log, f"{unusable}; the analysis after the reconstruction could "
                                                    "not use the log (--no-analysis to reconstruct only)")
        if unusable:
            _warn(unusable)
        if analysis_follows and (few := few_iterations_problem(cfg)) is not None:
            _warn(str(few))
        n_angles, n_rows, n_cols = common_shape(plans, exp.path)
        shape = (len(plans), n_rows, n_cols, n_cols)
        zoom_record = None  # rrdb, zoom auto: one zoom for the series, before the networks are chosen by it
        if method == "rrdb" and resolved.get("zoom") == "auto":
            change, zoom_record = series_zoom(existing, st.store_exists(store), plans, n_rows, executor, method, options,
                                              cfg.executor.device, cfg.executor.worker_threads(), corrections)
            options = {**options, **change}
        running = _resolved_options(method, options)  # resolved: the plan's options, with zoom "auto" as given
        model = model_provenance(method, running, n_cols)  # auto adds the second network by slice size and zoom
        if (line := _dose_line(method, running, n_cols, plans)) is not None:
            _warn(line)
        plan_sig = _plan_signature(exp, shape, files, resolved, model)

        manifest = Manifest(store).ensure()
        exists = st.store_exists(store)
        added = resumable(store, existing, plan_sig, exp.path) if exists else 0
        units = plan_units(len(plans), n_rows, cfg.rows_per_chunk)
        if again:  # units to do again first, then the scans' new entries: a stop between leaves them to do
            _fail_wider_new_scans([plans[t] for t in sorted(again)], store)
            manifest.forget({u.name for u in units if u.t in again})
            known = [plans[k["index"]].to_attrs(store.parent) if k.get("index") in again else k for k in known]
            st.update_attrs(store, scans=known, status=st.INCOMPLETE)
            line = (f"--redo: {len(again)} scan(s) surveyed again and to be reconstructed "
                    f"({', '.join(plans[t].path.name for t in sorted(again)[:4])}{', ...' if len(again) > 4 else ''})")
            log.info("%s", line)
            print(line, file=sys.stderr)
        done_before = manifest.done()
        _refuse_changed_scans([(p.index, p.path, p.fingerprint) for p in plans], known, units, done_before, store)
        if added:  # an experiment still being collected: its new scans are appended
            n_old = len(plans) - added
            _fail_wider_new_scans(plans[n_old:], store)
            st.grow_time(store, len(plans), even_time_step_s([p.start_time_s for p in plans]))
            st.update_attrs(store, plan=plan_sig, status=st.INCOMPLETE,
                            scans=known[:n_old] + [p.to_attrs(store.parent) for p in plans[n_old:]])
            line = f"{added} scan(s) added since the store was begun ({plans[n_old].path.name} on): appended"
            log.info("%s", line)
            print(line, file=sys.stderr)
        elif not exists:
            attrs = {"version": _version(), "method": method, "options": resolved, "model": model,
                     "config": {**cfg.model_dump(mode="json"), "config_file": str(exp.path)},
                     "command": command, "versions": st.versions(), "created": st.now_iso(),
                     "rows_per_chunk": cfg.rows_per_chunk, "plan": plan_sig, "network_zoom": zoom_record,
                     "scans": [p.to_attrs(store.parent) for p in plans]}
            st.create_store(store, shape, cfg.rows_per_chunk, attrs,
                            time_step_s=even_time_step_s([p.start_time_s for p in plans]),
                            pixel_size_nm=common_pixel_size(plans))
            log.info("created store %s shape %s chunks (1, %d, %d, %d)", store, shape,
                     min(cfg.rows_per_chunk, n_rows), n_cols, n_cols)

        todo = [u for u in units if u.name not in done_before]
        if exists and todo and len(todo) < len(units) and (change := st.made_by_change(existing)):
            line = (f"{store.name} was begun by other code ({change}): its {len(todo)} units still to do will be "
                    f"reconstructed by this one, unlike the {len(units) - len(todo)} done; 'flytomo run --restart' "
                    "reconstructs every scan alike")
            _warn(line)
            st.update_attrs(store, resumed_by=[*existing.get("resumed_by", []), {**st.versions(), "at": st.now_iso()}])
        _log_axes(plans, cfg.reconstruction.center, {u.t for u in todo})
        retry = set(manifest.failed()) & {u.name for u in todo}
        manifest.clear_failed(retry)
        summary = RunSummary(store=store, log_file=run_log_path(store), executor=executor.describe(),
                             total=len(units), skipped=len(units) - len(todo), axis=axis)
        log.info("executor %s; %d units, %d already done, %d to do (%d retried after failing)",
                 summary.executor, len(units), summary.skipped, len(todo), len(retry))
        if on_start is not None:
            on_start(summary.executor)

        # -- run
        plan_by_t = {p.index: p for p in plans}
        opts_key = tuple(sorted(options.items()))
        jobs, failed_now = [], []
        threads = cfg.executor.worker_threads()
        for u in todo:
            p = plan_by_t[u.t]
            if p.waiting:
                summary.waiting_scans[p.path.name] = p.error
                continue
            if not p.ok:
                failed_now.append(UnitResult(u, False, f"{p.path.name}: {p.error}"))
                continue
            jobs.append(UnitJob(u, str(store), str(p.path), p.geometry.to_dict(), method, opts_key,
                                cfg.executor.device, threads,
                                plan_sig["model"], corrections, p.jitter.to_dict() if p.jitter else None,
                                p.tilt.to_dict() if p.tilt else None, p.fingerprint))

        def on_error(job: UnitJob, exc: BaseException) -> UnitResult:
            return UnitResult(job.unit, False, _one_line(exc))

        bar = _progress(len(units), summary.skipped, progress)
        live = _ScanStatus(store, units, done_before)
        try:
            for r in failed_now:
                _record(summary, manifest, r, plan_by_t)
                bar.update(1)
            t_units = time.perf_counter()
            for r in executor.imap_unordered(run_unit, jobs, on_error):
                _record(summary, manifest, r, plan_by_t)
                if r.ok:
                    live.unit_done(r.unit)
                bar.update(1)
                bar.set_postfix(failed=summary.failed, refresh=False)
            summary.units_wall_s = time.perf_counter() - t_units
        finally:
            bar.close()
            try:
                live.flush()
            except Exception as e:  # a store gone mid-run: the error that stopped the run is the one to tell
                log.warning("could not mark the finished scans in %s: %s", store, _one_line(e))
        summary.wall_s = time.perf_counter() - t_start

        # -- finish: scan statuses, completeness
        done_all = manifest.done()
        failed_all = manifest.failed()
        by_t: dict[int, list[str]] = {}
        for u in units:
            by_t.setdefault(u.t, []).append(u.name)
        scans_attrs = []
        known_by_index = {k.get("index"): k for k in known}
        for p in plans:
            names = by_t.get(p.index, [])
            if all(n in done_all for n in names):
                status = "done"
            elif any(n in failed_all for n in names):
                status = "failed"
            else:
                status = "pending"
            if status == "done" and not p.ok and p.index in known_by_index:  # unreadable now: volume, entry stand
                scans_attrs.append({**known_by_index[p.index], "status": "done"})
                continue
            a = p.to_attrs(store.parent, status)
            if status == "failed":
                a["error"] = p.error or next(failed_all[n] for n in names if n in failed_all)
            elif status == "pending" and p.waiting:
                a["error"] = p.error
            scans_attrs.append(a)
        summary.complete = all(u.name in done_all for u in units)
        st.update_attrs(store, scans=scans_attrs, status=st.COMPLETE if summary.complete else st.INCOMPLETE,
                        last_run={"command": command, "finished": st.now_iso(), **{
                            k: v for k, v in summary.to_dict().items() if k in ("done", "skipped", "failed", "wall_s")}})
        log.info("finished: %d done now, %d already done, %d failed, %.1f s, %.2f slices/s; store %s",
                 summary.done, summary.skipped, summary.failed, summary.wall_s, summary.slices_per_s,
                 "complete" if summary.complete else "incomplete")
        for f, reason in summary.failed_scans.items():
            log.error("failed scan %s: %s", f, reason)
        for f, reason in summary.waiting_scans.items():
            log.warning("scan %s left to the next run: %s", f, reason)
        return summary
    except FlytomoError as err:
        log.error("stopped: %s", err)
        raise
    except (KeyboardInterrupt, SystemExit) as err:  # SIGTERM (scancel, a time limit), Ctrl-C
        log.warning("stopped (%s): %s", "interrupted" if isinstance(err, KeyboardInterrupt) else f"exit {err.code}",
                    resume_hint(restart))
        raise
    finally:
        release_read_bands()  # the rows kept from frame-compressed files (local executor: this process)
        if own_executor and executor is not None:
            executor.close()
        lock.release()
        if new_store and not st.store_exists(store):  # refused before any volume: no empty store left
            shutil.rmtree(store, ignore_errors=True)
        log.removeHandler(handler)
        handler.close()


def kept_zoom(existing: dict) -> dict:
    """``{"zoom": z}`` where a store's attributes ``existing`` record its series zoom, else ``{}``."""
    known = existing.get("network_zoom")
    ok = isinstance(known, dict) and isinstance(known.get("zoom"), (int, float)) and not isinstance(known["zoom"], bool)
    return {"zoom": float(known["zoom"])} if ok else {}


def series_zoom(existing: dict, exists: bool, plans: list[ScanPlan], n_rows: int, executor: Executor, method: str,
                options: dict, device: str, threads: int | None, corrections: Corrections) -> tuple[dict, dict | None]:
    """The rrdb method's ``zoom: auto`` made one number for every scan of a series, before the
    plan (the networks the run checks on its workers depend on it: at zoom 1 a 128-px slice gets
    no second network). A store begun with one keeps it (attribute ``network_zoom``); a store
    begun before there was one keeps choosing per slice, as it was begun. Else the median
    (:func:`recon.infer.series_zoom_choice`) of :func:`recon.methods.judge_scan_zoom` of the
    first, middle and last readable scans, judged on workers, said in one line, with a warning
    naming a judged scan that alone would go the other way. Returns (the options to change:
    ``{"zoom": z}`` or none, the record for a new store or None). A choice per slice would let crack contrast step between
    scans whose noise straddles the limit (docs/benchmarks.md "One zoom per series")."""
    from recon.infer import series_zoom_choice

    if exists:
        kept = kept_zoom(existing)
        if kept:
            known = existing["network_zoom"]
            judged = known.get("judged") or [known]  # a store of session 37 recorded one scan, unnamed as a list
            where = "; ".join(f"{j.get('scan', '?')} rows {':'.join(str(r) for r in j.get('rows', []))}"
                              for j in judged if isinstance(j, dict))
            line = f"network zoom {kept['zoom']:g}, kept from the store (judged on {where} when it was begun)"
            log.info("%s", line)
            print(line, file=sys.stderr)
        return kept, None
    readable = [p for p in plans if p.ok]
    if not readable:
        return {}, None
    picks = [readable[i] for i in sorted({0, len(readable) // 2, len(readable) - 1})]
    jobs = [UnitJob(WorkUnit(p.index, 0, n_rows), "", str(p.path), p.geometry.to_dict(), method,
                    tuple(sorted(options.items())), device, threads, None, corrections,
                    p.jitter.to_dict() if p.jitter else None, p.tilt.to_dict() if p.tilt else None) for p in picks]
    try:
        got = executor.map(zoom_probe, jobs)
    except Exception as err:  # the executor itself: the units will meet the problem and report it
        got = [(None, (0, 0), _one_line(err))] * len(jobs)
    failed = [f"{p.path.name} ({error})" for p, (_, _, error) in zip(picks, got) if error]
    if failed:
        _warn(f"network zoom: {'; '.join(failed)} could not be judged"
              + ("; each slice takes its own zoom" if len(failed) == len(picks) else ""))
    ok = [(p, c, rows) for p, (c, rows, error) in zip(picks, got) if not error]
    if not ok or any(c is None for _, c, _ in ok):
        return {}, None
    choice = series_zoom_choice([c for _, c, _ in ok])
    judged = [{"scan": p.path.name, "rows": list(rows), **c.to_dict()} for p, c, rows in ok]
    where = "; ".join(f"{j['scan']} rows {j['rows'][0]}:{j['rows'][1]}" for j in judged)
    line = f"network zoom {choice.words()}, judged on {where}: every scan at this zoom (reconstruction.rrdb.zoom: a number pins it)"
    log.info("%s", line)
    print(line, file=sys.stderr)
    apart = [j for j in judged if j["zoom"] != choice.zoom and j["noise"] is not None and not j.get("reason")]
    if apart:
        _warn("network zoom: " + "; ".join(f"{j['scan']} alone would take {j['zoom']:g} (noise {j['noise']:.3g}"
                                           f"{' over' if j['zoom'] == 1 else ' under'} {j['limit']:.3g})" for j in apart)
              + f"; every scan takes the series' {choice.zoom:g}, so crack fractions compare from scan to scan")
    return {"zoom": choice.zoom}, {**choice.to_dict(), "judged": judged}


def same_command() -> str:
    """How a run's messages name the command that goes on: "the same command", or inside a Slurm
    job (``SLURM_JOB_ID``), the ``flytomo submit`` that made it (probe AE: "the same command" there
    was the job's own ``flytomo run``)."""
    job = os.environ.get("SLURM_JOB_ID")
    return f"the same flytomo submit (this is Slurm job {job})" if job else "the same command"


def resume_hint(restart: bool) -> str:
    """What a stopped run says: the units done stay; how to go on (never ``--restart`` again)."""
    if os.environ.get("SLURM_JOB_ID") and not restart:
        return (f"the units done so far are kept; a job that requeues itself near its time limit goes on by itself, "
                f"else {same_command()} resumes")
    return ("the units done so far are kept; run "
            + ("it again without --restart" if restart else "the same command again") + " to resume")


def uncovered_scans(plans: list[ScanPlan], temp_log: tuple[np.ndarray, np.ndarray] | None,
                    lagging: bool = False) -> list[str]:
    """One line per readable scan whose time window lies outside the temperature log; ``lagging``:
    only the newest scans past its end that wait for it (:func:`analysis.table.past_log_end`),
    else only the others."""
    from analysis.table import outside_log_text, past_log_end

    if temp_log is None:
        return []
    lt = temp_log[0]
    timed = [p for p in plans if p.ok and p.start_time_s is not None]
    lo = np.array([p.start_time_s for p in timed], float)
    pending = past_log_end(lo, lo + np.array([p.duration_s or 0.0 for p in timed]), lt[0], lt[-1])
    out = []
    for p, waits in zip(timed, pending):
        if waits != lagging:
            continue
        a, b = p.start_time_s, p.start_time_s + (p.duration_s or 0.0)
        if a < lt[0] - 1e-9 or b > lt[-1] + 1e-9:
            line = outside_log_text(p.path.name, a, b, lt[0], lt[-1])
            if p.start_time_naive and not getattr(temp_log, "naive", False):  # blind probe V: the log was blamed
                line += (f" ({p.path.name}'s start is a date-time without a zone, read as UTC where the log's times "
                         "are not: set timezone: to the clock it was written on, or write the zone in the file)")
            out.append(line)
    return out


def log_problems(plans: list[ScanPlan], temp_log: tuple[np.ndarray, ...] | None,
                 extrapolate: bool, log_path: object = "the temperature log") -> tuple[str | None, list[str]]:
    """Whether the analysis can place the readable scans on the temperature log: (the line that
    says why it cannot, or None; the lines to warn about). It cannot where a scan records no
    time, where scans share one start time, or (without ``extrapolate``) where a scan lies
    outside the log; outside it with ``extrapolate``, a warning per scan. Date-times without a
    zone on one side only (a :class:`hpc.config.TemperatureLog`'s ``naive``, a plan's
    ``start_time_naive``): a warning first (:func:`analysis.table.clock_zone_warning`)."""
    from analysis.table import clock_zone_warning, is_unix_time

    if temp_log is None:
        return None, []
    zone = clock_zone_warning(bool(getattr(temp_log, "naive", False)),
                              [p.path.name for p in plans if p.ok and p.start_time_naive],
                              any(p.ok and p.start_time_s is not None and not p.start_time_naive
                                  and is_unix_time(p.start_time_s) for p in plans), log_path)
    unusable, to_warn = _placement_problems(plans, temp_log, extrapolate)
    return unusable, ([zone] if zone else []) + to_warn


def _placement_problems(plans: list[ScanPlan], temp_log: tuple[np.ndarray, ...],
                        extrapolate: bool) -> tuple[str | None, list[str]]:
    """:func:`log_problems` but the clocks' zones."""
    from analysis.table import clocks_differ

    timeless = [p.path.name for p in plans if p.ok and p.start_time_s is None]
    if timeless:  # extrapolate cannot help: such a scan has no place on the log at all
        more = f" (+{len(timeless) - 1} more)" if len(timeless) > 1 else ""
        return (f"scan {timeless[0]}{more} records no time, so it cannot be placed on the temperature log (flytomo "
                "reads a scan's start from scan_time, a root attribute or dataset of Unix seconds or a date-time, "
                "DataExchange's /process/acquisition/start_date or NXtomo's start_time): give the times in a scan "
                "list (scan_list: LIST.csv, columns file, time_s or a date-time, duration_s; flytomo init "
                "--scan-list), or set temperature_log: null to analyse against the scan order"), []
    shared = shared_start_times(plans)
    if shared:
        return shared, []
    lines = uncovered_scans(plans, temp_log)
    waiting = [] if extrapolate else uncovered_scans(plans, temp_log, lagging=True)
    if waiting:  # a log still being written: reconstructed now, their temperatures left for it
        more = f" (+{len(waiting) - 1} more)" if len(waiting) > 1 else ""
        waiting = [f"{waiting[0]}{more}: reconstructed, its temperature left empty until the log covers it"]
    if not lines or extrapolate:
        return None, (lines + uncovered_scans(plans, temp_log, lagging=True) if extrapolate else waiting)
    more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
    timed = [p.start_time_s for p in plans if p.ok and p.start_time_s is not None]
    other_clock = bool(timed) and clocks_differ(timed[0], float(temp_log[0][-1]))
    hint = "" if other_clock else "; set analysis.extrapolate: true to hold the log's end values"
    return lines[0] + more + hint, waiting


class _ScanStatus:
    """Marks a scan ``done`` in the store's ``flytomo.scans`` as soon as its last unit is
    written, so that a reader (an analysis of the time points so far, while the experiment
    still runs) can tell the complete time points without the manifest (the attributes were
    brought up to date only when the run ended).

    Each write rewrites the whole scan list, so scans finished close together are written
    together: a write waits until at least ``SHARE`` times its own last cost has passed
    (at most ``MAX_WAIT_S``), which keeps the marking under ~5 % of the run however many scans
    (blind probe AB: one write per scan made it O(N²), 101 s per run at 1,000 scans)."""

    SHARE = 20.0
    MAX_WAIT_S = 2.0

    def __init__(self, store: Path, units: list[WorkUnit], done: set[str] | dict) -> None:
        self.store = store
        self.names: dict[int, set[str]] = {}
        for u in units:
            self.names.setdefault(u.t, set()).add(u.name)
        self.done = set(done)
        self.marked = {t for t, names in self.names.items() if names <= self.done}
        self.waiting: set[int] = set()
        self.last_write = -math.inf
        self.write_cost = 0.0
        self.writes = 0

    def unit_done(self, unit: WorkUnit) -> None:
        self.done.add(unit.name)
        t = unit.t
        if t in self.marked or not self.names.get(t, set()) <= self.done:
            return
        self.marked.add(t)
        self.waiting.add(t)
        if time.perf_counter() - self.last_write >= min(self.SHARE * self.write_cost, self.MAX_WAIT_S):
            self.flush()

    def flush(self) -> None:
        """Writes the scans finished since the last write as ``done``."""
        if not self.waiting:
            return
        t0 = time.perf_counter()
        scans = [dict(s) for s in st.read_attrs(self.store).get("scans", [])]
        for s in scans:
            if s.get("index") in self.waiting:
                s["status"] = "done"
        st.update_attrs(self.store, scans=scans)
        self.waiting.clear()
        self.last_write = time.perf_counter()
        self.write_cost = self.last_write - t0
        self.writes += 1


def _record(summary: RunSummary, manifest: Manifest, r: UnitResult, plans: dict[int, ScanPlan]) -> None:
    for category, message in r.warnings:
        warnings.warn(message, _WARNING_CATEGORIES.get(category, UserWarning), stacklevel=2)
    if not r.ok and manifest.is_done(r.unit.name):
        # its worker died after writing the unit and its marker (the data is on disk)
        log.warning("unit %s reported %r, but its marker is there: counted as done", r.unit.name, r.reason)
        r = UnitResult(r.unit, True, "", r.seconds, r.build_seconds, r.worker, r.peak_rss_mb)
    if r.ok:
        summary.done += 1
        summary.rows += r.unit.rows
        summary.unit_seconds.append(r.seconds)
        summary.build_seconds += r.build_seconds
        if r.worker:
            summary.peak_rss_mb[r.worker] = max(summary.peak_rss_mb.get(r.worker, 0.0), r.peak_rss_mb)
        log.info("unit %s done in %.2f s (build %.2f s) on %s", r.unit.name, r.seconds, r.build_seconds, r.worker)
        return
    summary.failed += 1
    summary.failures[r.unit.name] = r.reason
    f = plans[r.unit.t].path.name
    summary.failed_scans.setdefault(f, r.reason)
    manifest.mark_failed(r.unit.name, r.reason, {"file": f, "worker": r.worker})
    log.error("unit %s (%s) failed: %s", r.unit.name, f, r.reason)


def _version() -> str:
    import recon

    return recon.__version__
