"""Analyse a whole experiment store: segment every time point, join the temperature log,
write the crack table (CSV + Parquet) and the figures.

:func:`analyze_time_point` is a pure function of (store path, t, params) that reads one time
point slab by slab and returns a plain dict, so a batch engine can run it anywhere (Dask
``client.map``, MPI ranks, a process pool). :func:`analyze_store` spreads it with
``map_fn`` / ``executor`` and gathers the rows in the calling process.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from recon.errors import FlytomoError

from .plots import plot_crack_vs_temperature, plot_crack_vs_time, plot_montage
from .segment import (ALL_NON_FINITE, BLURRED_EDGE_SIGMA_PX, NOISY_SPECK_FRACTION, NOT_RECONSTRUCTED,
                      OTHER_PARTICLE_SHARE, SMALL_PARTICLE_RADIUS, SegmentationParams, equivalent_radius,
                      segment_volume)
from .store import StoreInfo, open_store
from .table import (atomic_write, build_table, clock_zone_warning, is_unix_time, read_temperature_log,
                    scan_temperatures, write_table)

__all__ = ["analyze_time_point", "analyze_store", "AnalysisOutputs", "params_from_store", "store_config",
           "config_source", "default_out_dir", "PLOTS"]

#: file names of the figures analyze_store writes
PLOTS = {
    "time": "crack_fraction_vs_time.png",
    "temperature": "crack_fraction_vs_temperature.png",
    "montage": "crack_montage.png",
}


def _params(params: SegmentationParams | dict | None) -> SegmentationParams:
    if isinstance(params, SegmentationParams):
        return params
    return SegmentationParams(**(params or {}))


def analyze_time_point(store_path: str | Path, t: int, params: SegmentationParams | dict | None = None,
                       with_slice: bool = False) -> dict:
    """Segment time point ``t`` of the store at ``store_path``.

    Reads the (z, y, x) volume slab by slab (``params.block_z`` rows plus filter halos), so
    memory stays at about 6 bytes per voxel whatever the store holds.

    Returns a dict: ``t``, ``scan_index``, ``status`` (``"ok"``, ``"no particle found"``,
    ...), ``particle_volume_vox``, ``crack_volume_vox``, ``pore_volume_vox``,
    ``crack_fraction``, ``pore_fraction``, ``n_cracks``, ``n_pores``, ``speck_fraction`` and the
    thresholds used; with ``with_slice`` also ``slice``: {``z``, ``image`` (y, x) float32, ``envelope``,
    ``cracks``, ``pores`` (y, x) bool} of the central slice z = nz // 2.
    """
    p = _params(params)
    info = open_store(store_path)
    vol = info.time_point(int(t))
    res = segment_volume(vol, p, return_masks=with_slice)
    out: dict[str, Any] = {"t": int(t), "scan_index": int(info.scans[int(t)].get("index", t))}
    out.update(res.summary())
    if with_slice:
        z = vol.shape[0] // 2
        empty = np.zeros(vol.shape[1:], bool)
        out["slice"] = {
            "z": int(z),
            "image": np.asarray(vol[z:z + 1], np.float32)[0],
            "envelope": res.envelope[z].copy() if res.envelope is not None else empty,
            "cracks": res.cracks[z].copy() if res.cracks is not None else empty,
            "pores": res.pores[z].copy() if res.pores is not None else empty,
        }
    return out


def _task(args: tuple, store_path: str, params: dict) -> dict:
    t, with_slice = args
    return analyze_time_point(store_path, t, params, with_slice=with_slice)


def store_config(attrs: dict, store: str | Path | None = None) -> dict | None:
    """The experiment config of a store (its ``flytomo`` attribute ``attrs``): the file it was made
    from as it reads now (``config.config_file``), where it still exists and still names this
    ``store`` as its output, so that a log or segmentation edited since is used; else the copy
    the store keeps from when it was made (:func:`config_source` says which and why); None for
    a store no config made."""
    return _config_and_source(attrs, store)[0]


def config_source(attrs: dict, store: str | Path | None = None) -> str | None:
    """One line saying which experiment config :func:`store_config` gives where it is not the
    file as it is now (gone, unreadable, or naming another output); None where it is, or
    where no config made the store."""
    return _config_and_source(attrs, store)[1]


def _config_and_source(attrs: dict, store: str | Path | None) -> tuple[dict | None, str | None]:
    cfg = attrs.get("config")
    if not isinstance(cfg, dict):
        return None, None
    path = cfg.get("config_file")
    if not isinstance(path, str):
        return cfg, None
    now, why = _config_for(Path(path), store)
    if now is None and store is not None and isinstance(cfg.get("output"), str):
        # the experiment folder moved or copied: the config where it sits beside this store as it
        # sat beside the store it made
        made = _output_of(Path(path), cfg["output"])
        beside = Path(os.path.normpath(Path(store).absolute() / os.path.relpath(path, made)))
        if beside != Path(path):
            now = _config_for(beside, store)[0]
    if now is not None:
        return now, None
    return cfg, f"{why}: the store's copy of its experiment config, from when it was made, is used"


def _output_of(config_file: Path, output: str) -> Path:
    out = Path(output).expanduser()
    return Path(os.path.normpath(out if out.is_absolute() else config_file.parent.absolute() / out))


def _config_for(path: Path, store: str | Path | None) -> tuple[dict | None, str]:
    """The config at ``path`` as it reads now where it names ``store`` as its output, else None
    and why not."""
    if not path.is_file():
        return None, f"{path} is gone"
    try:
        from recon.yamlfile import load_yaml

        now = load_yaml(path.read_text())
    except Exception:
        return None, f"{path} cannot be read now"
    if not isinstance(now, dict) or not isinstance(now.get("output"), str):
        return None, f"{path} names no output now"
    out = _output_of(path, now["output"])
    if store is not None and out.resolve() != Path(store).resolve():
        return None, f"{path} now makes another store ({out})"
    return {**now, "config_file": str(path)}, ""


def params_from_store(attrs: dict, store: str | Path | None = None) -> SegmentationParams | None:
    """The segmentation parameters the store's experiment config gives (:func:`store_config`),
    if any (``analysis.segmentation`` or ``analysis``)."""
    return _params_of(store_config(attrs, store))


def _params_of(cfg: dict | None) -> SegmentationParams | None:
    if not isinstance(cfg, dict):
        return None
    ana = cfg.get("analysis")
    if not isinstance(ana, dict):
        return None
    seg = ana.get("segmentation", ana)
    fields = set(SegmentationParams.model_fields)
    seg = {k: v for k, v in seg.items() if k in fields}
    return SegmentationParams(**seg) if seg else None


def log_from_store(attrs: dict, store: str | Path | None = None) -> Path | None:
    """The temperature log the store's experiment config names (:func:`store_config`:
    ``temperature_log``, relative to ``config_file``'s folder), where that file exists; else
    where it sits relative to ``store`` as it sat relative to the store when made (the experiment
    folder moved or copied); else None, with a warning naming the log that is gone."""
    cfg = store_config(attrs, store)
    if (log := _config_log(cfg)) is None:
        return None
    if log.is_file():
        return log
    made = attrs.get("config") if isinstance(attrs.get("config"), dict) else {}
    if store is not None and isinstance(made.get("config_file"), str) and isinstance(made.get("output"), str):
        was = _output_of(Path(made["config_file"]), made["output"])
        moved = Path(os.path.normpath(Path(store).absolute() / os.path.relpath(log.absolute(), was)))
        if moved.is_file():
            return moved
    warnings.warn(f"{log}: the temperature log the experiment config names is gone, so no temperatures are read; "
                  "give it with --temperature (or --temperature none to analyse without one)", UserWarning,
                  stacklevel=2)
    return None


def _config_log(cfg: dict | None) -> Path | None:
    """The temperature log an experiment config names (relative to its file's folder), or None."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("temperature_log"), str):
        return None
    log = Path(cfg["temperature_log"]).expanduser()
    if not log.is_absolute() and isinstance(cfg.get("config_file"), str):
        log = Path(cfg["config_file"]).parent / log
    return log


def _config_log_start(cfg: dict | None, log: str | Path | None) -> str | float | None:
    """The config's ``temperature_log_start`` where ``log`` is the log that config names (another
    log given to ``analyze`` keeps its own clock), else None."""
    start = cfg.get("temperature_log_start") if isinstance(cfg, dict) else None
    named = _config_log(cfg)
    if start is None or log is None or named is None:
        return None
    try:
        return start if os.path.samefile(named, log) else None
    except OSError:
        return None


#: the files an analysis writes into its folder
#: what an analysis writes besides its plots: ``analysis_record.json`` says how it was made (a
#: colleague given only this folder could not tell), ``segmentation_params.json`` is --params' format
ANALYSIS_FILES = ("crack_table.csv", "crack_table.parquet", "segmentation_params.json", "analysis_record.json",
                  *PLOTS.values())


def remove_analysis(out_dir: str | Path) -> None:
    """Remove the files an analysis wrote into ``out_dir`` (the folder and anything else in it stay)."""
    for name in ANALYSIS_FILES:
        (Path(out_dir) / name).unlink(missing_ok=True)


def _record(info: StoreInfo, temperature_csv: str | Path | None, params: SegmentationParams) -> dict:
    """How an analysis was made: flytomo's version, the store (path, method, the version that
    wrote it), the temperature log, the segmentation, and when."""
    from datetime import datetime, timezone

    import recon

    attrs = info.attrs
    return {"flytomo_version": recon.__version__, "analysed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "store": str(Path(info.path).absolute()), "store_method": attrs.get("method"),
            "store_options": attrs.get("options"), "store_flytomo_version": attrs.get("version"),
            "time_points": info.n_times,
            "temperature_log": str(Path(temperature_csv).absolute()) if temperature_csv is not None else None,
            "segmentation": params.model_dump()}


def analysis_inputs(info: StoreInfo, temperature_csv: str | Path | None, params: SegmentationParams,
                    extrapolate: bool, timezone: str | None, montage_frames: int,
                    log_start: str | float | None = None) -> dict:
    """What an analysis is made from, as one JSON-able dict: a digest of the store's scans
    and settings (status, times, files' fingerprints, method, when it was begun), the log file's
    path, size and modification time, the segmentation and options, and a digest of this
    package's code (the reconstruction's shows in the store's own)."""
    import hashlib

    import recon

    a = info.attrs
    store = {"shape": list(info.shape), "scans": info.scans, **{k: a.get(k) for k in
                                                                 ("method", "options", "model", "created")}}
    log = None
    if temperature_csv is not None:
        st = Path(temperature_csv).stat()
        log = [str(Path(temperature_csv).absolute()), st.st_size, st.st_mtime_ns]
    code = hashlib.sha256()
    for f in sorted(Path(__file__).resolve().parent.glob("*.py")):
        code.update(f.name.encode() + f.read_bytes())
    return {"store": hashlib.sha256(json.dumps(store, sort_keys=True, default=str).encode()).hexdigest()[:16],
            "log": log, "segmentation": params.model_dump(mode="json"), "extrapolate": bool(extrapolate),
            "timezone": timezone, "log_start": log_start, "montage_frames": montage_frames, "flytomo_version": recon.__version__,
            "analysis_code": code.hexdigest()[:12]}


def _kept_analysis(out_dir: Path, inputs: dict, params: SegmentationParams) -> AnalysisOutputs | None:
    """The analysis in ``out_dir`` where its record names the same ``inputs`` and its table
    reads; else None."""
    try:
        record = json.loads((out_dir / "analysis_record.json").read_text())
        table = pd.read_parquet(out_dir / "crack_table.parquet")
    except (OSError, ValueError):
        return None
    if record.get("inputs") != json.loads(json.dumps(inputs, default=str)) or not (out_dir / "crack_table.csv").is_file():
        return None
    plots = {k: out_dir / name for k, name in PLOTS.items() if (out_dir / name).is_file()}
    return AnalysisOutputs(table=table, csv=out_dir / "crack_table.csv", parquet=out_dir / "crack_table.parquet",
                           plots=plots, params=params, up_to_date=True)


def default_out_dir(store_path: str | Path) -> Path:
    """``<store folder>/<store name without .zarr>_analysis``."""
    store_path = Path(store_path)
    stem = store_path.name[:-5] if store_path.name.endswith(".zarr") else store_path.name
    return store_path.parent / f"{stem}_analysis"


@dataclass
class AnalysisOutputs:
    table: pd.DataFrame
    csv: Path
    parquet: Path
    plots: dict[str, Path] = field(default_factory=dict)
    params: SegmentationParams | None = None
    #: the analysis already in ``out_dir`` was made from these same inputs and is kept (``if_changed``)
    up_to_date: bool = False


def _montage_times(nt: int, k: int) -> list[int]:
    if k <= 0:
        return []
    return sorted(set(int(round(v)) for v in np.linspace(0, nt - 1, min(k, nt))))


def _montage_peak(results: list[dict], show: set[int]) -> tuple[int, int] | None:
    """(time point of the largest crack fraction, the montage's frame it takes the place of: the
    nearest one, not the first or last) where the evenly spread frames miss it, else None (blind
    probe AB: a 300-scan montage of 8 frames missed the crack peak)."""
    ok = [r for r in results if r.get("status") == "ok" and np.isfinite(r.get("crack_fraction", np.nan))]
    if len(show) < 3 or not ok:
        return None
    peak = int(max(ok, key=lambda r: r["crack_fraction"])["t"])
    if peak in show:
        return None
    inner = sorted(show)[1:-1]
    return peak, min(inner, key=lambda t: (abs(t - peak), t))


def _mapper(map_fn: Callable | None, executor: Any) -> Callable[[Callable, Iterable], list]:
    if map_fn is not None:
        return lambda f, xs: list(map_fn(f, xs))
    if executor is None:
        return lambda f, xs: list(map(f, xs))
    if hasattr(executor, "gather") and hasattr(executor, "submit"):  # distributed.Client
        return lambda f, xs: list(executor.gather(executor.map(f, list(xs), pure=False)))
    if hasattr(executor, "map"):  # concurrent.futures.Executor and friends
        return lambda f, xs: list(executor.map(f, xs))
    raise TypeError(f"executor {executor!r} has no map()")


def _warn_if_noisy(store: Path, table: pd.DataFrame, defect_sigma: float) -> None:
    """One warning where scans are noisy at the crack scale (``speck_fraction`` above
    :data:`~analysis.segment.NOISY_SPECK_FRACTION`): noise that leaves many specks too small
    to be cracks also leaves clusters large enough to count as cracks."""
    ok = table[table["status"] == "ok"]
    noisy = ok[ok["speck_fraction"] > NOISY_SPECK_FRACTION]
    if len(noisy):
        warnings.warn(
            f"{store}: {len(noisy)} of {len(ok)} scans are noisy at the crack scale (up to "
            f"{100 * noisy['speck_fraction'].max():.1f} % of the particle in dark specks too small to be "
            f"cracks; column speck_fraction): noise may be counted as cracks. Reconstruct with "
            f"mlem-flyscan or rrdb, or smooth more (analysis.segmentation.defect_sigma, now {defect_sigma:g} voxels)",
            stacklevel=2)


def _warn_if_segmentation_changes(out_dir: Path, p: SegmentationParams) -> None:
    """One warning where the analysis in ``out_dir`` that this one replaces was made with other
    segmentation settings, naming each (blind probe AG: a plain ``run`` quietly replaced an
    analysis tuned with ``analyze --params`` by one with the config's settings)."""
    try:
        old = json.loads((out_dir / "analysis_record.json").read_text()).get("segmentation")
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(old, dict):
        return
    new = json.loads(json.dumps(p.model_dump(), default=str))
    changed = [f"{k}: {json.dumps(old.get(k))} there, {json.dumps(new[k])} now" for k in new if old.get(k, new[k]) != new[k]]
    if changed:
        warnings.warn(f"{out_dir}: replaces an analysis made with other segmentation settings ({'; '.join(changed)}); "
                      "flytomo run analyses with its config's analysis.segmentation: put settings to keep there",
                      stacklevel=2)


def _warn_about_rings(store: Path, table: pd.DataFrame) -> None:
    """One warning where dark rings around the axis (ring artifacts) were found and left out of
    the cracks (``ring_fraction``, :func:`analysis.segment._is_ring`)."""
    ok = table[(table["status"] == "ok") & (table["ring_fraction"] > 0)]
    if len(ok):
        warnings.warn(
            f"{store}: {len(ok)} of {int((table['status'] == 'ok').sum())} scans hold dark rings around the axis "
            f"(up to {100 * ok['ring_fraction'].max():.2f} % of the particle; column ring_fraction), ring artifacts "
            "left out of the cracks; reconstruct with remove_stripes (flytomo recon --remove-stripes all) to "
            "take them out of the volumes", stacklevel=2)


def _warn_if_blurred(store: Path, table: pd.DataFrame) -> None:
    """One warning where the particle's surface is blurred (median ``edge_sigma_px`` of the
    scans analysed at or above :data:`~analysis.segment.BLURRED_EDGE_SIGMA_PX`): thin cracks
    lose their contrast and read low, or vanish (probe AD: σ ≥ 1.5 px erased them, unsaid)."""
    ok = table[(table["status"] == "ok") & np.isfinite(table["edge_sigma_px"])]
    if len(ok) and (sigma := float(ok["edge_sigma_px"].median())) >= BLURRED_EDGE_SIGMA_PX:
        warnings.warn(
            f"{store}: the particle's edges are blurred (a Gaussian σ of {sigma:.1f} px, the median of {len(ok)} "
            f"scans; column edge_sigma_px): cracks narrower than about {3 * sigma:.0f} px lose their contrast and "
            "read low or vanish (at σ 1.5 px, 1-3 px cracks read a quarter to a third of their volume). A sharper "
            "reconstruction (rrdb or mlem-flyscan of the raw scans) or a finer voxel size resolves them",
            stacklevel=2)


def _warn_about_particles(store: Path, table: pd.DataFrame, n_rows: int) -> None:
    """Warnings where the crack fractions hold less than they seem to: separate particles left
    out (the fractions are of the largest one), and particles too small for the segmentation's
    closing and partial-volume rim (biased by tens of percent). A particle's size is its
    sphere's radius, or where the ``n_rows`` reconstructed rows cut it (a slab), the radius of
    its mean section: 8 rows of a particle 76 px across are no sphere of radius 19."""
    ok = table[table["status"] == "ok"]
    multi = ok[ok["other_particles"] > 0]
    if len(multi):
        warnings.warn(
            f"{store}: {len(multi)} of {len(ok)} scans hold other particles beside the analysed one (up to "
            f"{int(multi['other_particles'].max())}, each >= {100 * OTHER_PARTICLE_SHARE:g} % of its volume; "
            f"column other_particles; scans {_scan_list(multi)}): each row's fractions are of the largest "
            "particle only (whole or cut by the field's edge; the montage outlines it), the others are not "
            "measured", stacklevel=2)
    volume = ok["particle_volume_vox"].astype(float)
    radius = np.maximum(equivalent_radius(volume), np.sqrt(volume / (np.pi * max(n_rows, 1))))
    small = ok[radius < SMALL_PARTICLE_RADIUS]
    if len(small):
        warnings.warn(
            f"{store}: {len(small)} of {len(ok)} scans have a particle under {SMALL_PARTICLE_RADIUS:g} voxels in "
            f"equivalent radius (of a sphere, or in a slab of a section; smallest {radius.min():.1f}; scans {_scan_list(small)}): crack fractions of "
            "particles this small are biased by tens of percent (docs/benchmarks.md): compare them between "
            "scans, not with other measurements", stacklevel=2)


#: a crack fraction that falls by at least this (points, and half of itself) from one scan to the
#: next while the pore fraction rises by most of it: a crack opened wide read as a pore?
CRACK_TO_PORE_POINTS = 0.5


def _warn_about_cracks_read_as_pores(store: Path, table: pd.DataFrame) -> None:
    """A warning where, between consecutive analysed scans, the crack fraction falls by at least
    :data:`CRACK_TO_PORE_POINTS` points (and by half) while the pore fraction rises by at least
    0.7 of that: a crack opened so wide that its shape is a pore's (no single scan can tell)."""
    ok = table[table["status"] == "ok"]
    crack, pore = 100 * ok["crack_fraction"].to_numpy(float), 100 * ok["pore_fraction"].to_numpy(float)
    drop, rise = crack[:-1] - crack[1:], pore[1:] - pore[:-1]
    hits = np.flatnonzero((drop >= CRACK_TO_PORE_POINTS) & (drop >= 0.5 * crack[:-1]) & (rise >= 0.7 * drop))
    if hits.size:
        i = int(hits[0])
        a, b = (str(v) for v in ok["scan_id"].iloc[[i, i + 1]])
        warnings.warn(
            f"{store}: from scan {a} to {b} the cracks fell from {crack[i]:.2f} % to {crack[i + 1]:.2f} % while the "
            f"pores rose from {pore[i]:.2f} % to {pore[i + 1]:.2f} % ({hits.size} place(s) like it): a crack opened "
            "so wide that its shape is a pore's? Look at the montage; a higher analysis.segmentation.pore_min_aspect "
            "keeps such voids cracks", stacklevel=2)


def _scan_list(rows: pd.DataFrame, most: int = 5) -> str:
    ids = [str(v) for v in rows["scan_id"].tolist()]
    return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")


def _write_plots(info, table, results: list[dict], show: set[int], log, folder: Path,
                 timezone: str | None = None) -> dict[str, Path]:
    """The time and temperature plots and the montage of the ``show`` time points, into ``folder``;
    the time axis's origin said on ``timezone``'s clock (None: UTC)."""
    name = info.experiment_name
    method = f" ({info.method})" if info.method else ""
    temperatures = log is not None or np.isfinite(table["temperature_C"].to_numpy(float)).any()
    figs = {"time": plot_crack_vs_time(table, folder / PLOTS["time"], log=log, timezone=timezone,
                                       title=f"{name}{method}: crack fraction"
                                             f"{' and temperature' if temperatures else ' (no temperatures)'}"),
            "temperature": plot_crack_vs_temperature(table, folder / PLOTS["temperature"],
                                                     title=f"{name}{method}: crack fraction vs temperature")}
    frames = []
    by_t = {r["t"]: r for r in results}
    for t in sorted(show):
        r = by_t.get(t)
        if r is None or "slice" not in r:
            continue
        row = table.iloc[t]
        # the time plot's clock (blind probe AG: "mid-scan 15 s" named no origin)
        when = f"  t {row['elapsed_min']:.1f} min" if np.isfinite(row["elapsed_min"]) else ""
        scan = str(row["scan_id"])
        label = (f"{scan if scan.lower().startswith('scan') else 'scan ' + scan}{when}\n"
                 + (f"{row['temperature_C']:.0f} °C  " if np.isfinite(row["temperature_C"]) else "")
                 + (f"cracks {100 * row['crack_fraction']:.2f}%" if row["status"] == "ok" else row["status"]))
        frames.append({**r["slice"], "label": label})
    z = frames[0]["z"] if frames else 0
    failed = int((table["status"] != "ok").sum())  # probe AG: two failed scans, unsaid
    parts = ([f"{len(frames)} of {len(table)} scans"] if len(frames) < len(table) else []) + \
        ([f"{failed} not analysed"] if failed else [])  # probe AD: 8 of 10, unsaid
    some = f" ({'; '.join(parts)})" if parts else ""
    figs["montage"] = plot_montage(frames, folder / PLOTS["montage"],
                                   title=f"{name}{method}: slice z={z} through time{some}; t as on the time plot")
    return figs


def analyze_store(store_path: str | Path, temperature_csv: str | Path | None = None,
                  out_dir: str | Path | None = None, params: SegmentationParams | dict | None = None,
                  executor: Any = None, map_fn: Callable | None = None, extrapolate: bool | None = None,
                  montage_frames: int = 8, plots: bool = True, timezone: str | None = None,
                  if_changed: bool = False, log_start: str | float | None = None) -> AnalysisOutputs:
    """Analyse every time point of an experiment store and write the results.

    Parameters
    ----------
    store_path : the experiment store (array ``0`` (t, z, y, x) or (z, y, x); scans in the
        root attribute ``flytomo.scans``).
    temperature_csv : temperature log (columns ``time_s``, ``temperature_C``); without it the
        scans' own ``temperature_C`` is used.
    out_dir : where ``crack_table.csv``, ``crack_table.parquet``, the PNGs and
        ``segmentation_params.json`` go (default :func:`default_out_dir`); an earlier
        analysis's files there are removed before these are written, the table last.
    params : :class:`SegmentationParams`; default: those in the store's config, else defaults.
    executor : a ``distributed.Client`` (``client.map`` + ``gather``) or anything with
        ``map(fn, iterable)`` (``concurrent.futures`` executors); ``map_fn`` — a
        ``map``-like callable — wins over it. Default: the builtin ``map`` (in this process).
    extrapolate : accept scans outside the temperature log (its end values are held);
        ``None``: the store config's ``analysis.extrapolate``, else False.
    montage_frames : how many time points the slice montage shows: evenly spread, the largest
        crack fraction in place of the nearest inner one where they miss it.
    timezone : the clock of the log's date-times written without a zone
        (:func:`recon.io.metadata.parse_zone`); None: the store config's ``timezone``, else UTC.
    log_start : where the log counts seconds from its own start, the date-time it reads 0 at
        (:func:`analysis.table.read_temperature_log`'s ``start``); None: the store config's
        ``temperature_log_start`` where ``temperature_csv`` is the log that config names.
    if_changed : keep the analysis in ``out_dir`` where it was made from the same inputs (the
        store's scans and settings, the log's file, the segmentation, the code:
        :func:`analysis_inputs`), as `flytomo run` does when it polls a finished experiment.

    Raises :class:`FlytomoError` for a missing / empty / timeless store and a temperature log
    that is unreadable or does not cover a scan — before any segmentation is done. A time
    point without a particle is a row whose ``status`` says so.
    """
    info = open_store(store_path)
    cfg = store_config(info.attrs, store_path)  # read once: the file as it is now, else the store's copy
    p = _params(params) if params is not None else (_params_of(cfg) or SegmentationParams())
    if extrapolate is None:
        ana = cfg.get("analysis") if isinstance(cfg, dict) else None
        extrapolate = bool(ana.get("extrapolate", False)) if isinstance(ana, dict) else False
    if timezone is None and isinstance(cfg, dict) and isinstance(cfg.get("timezone"), str):
        timezone = cfg["timezone"]
    if log_start is None:
        log_start = _config_log_start(cfg, temperature_csv)
    log = read_temperature_log(temperature_csv, timezone, log_start) if temperature_csv is not None else None
    if log is not None and (line := clock_zone_warning(
            bool(log.attrs.get("naive_times")), [Path(str(s.get("file", s.get("scan_id", "")))).name
                                                 for s in info.scans if s.get("start_time_naive")],
            any(is_unix_time(float(t)) for t in (s.get("start_time_s") for s in info.scans)
                if isinstance(t, (int, float)) and not isinstance(t, bool)), temperature_csv)):
        warnings.warn(line, UserWarning, stacklevel=2)
    times = scan_temperatures(info.scans, log, temperature_csv, extrapolate=extrapolate)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(info.path)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FlytomoError(out_dir, f"cannot create the output folder ({err.strerror})") from None
    inputs = analysis_inputs(info, temperature_csv, p, extrapolate, timezone, montage_frames if plots else 0,
                             log_start)
    # one analysis at a time per folder: two shared .analysis.partial and left a table beside
    # another analysis's record and plots, or an empty folder (blind probe AF)
    from hpc.manifest import RunLock

    with RunLock(out_dir, " ".join(sys.argv), path=out_dir / ANALYSIS_LOCK, what="flytomo analysis"):
        if if_changed and (kept := _kept_analysis(out_dir, inputs, p)) is not None:
            return kept
        return _analyze_into(out_dir, info, p, times, log, temperature_csv, inputs, montage_frames, plots,
                             map_fn, executor, timezone)


#: the lock file of an analysis folder while an analysis writes it
ANALYSIS_LOCK = ".analysis.lock"


def _analyze_into(out_dir: Path, info: StoreInfo, p: SegmentationParams, times: pd.DataFrame, log: Any,
                  temperature_csv: str | Path | None, inputs: dict, montage_frames: int, plots: bool,
                  map_fn: Callable | None, executor: Any, timezone: str | None = None) -> AnalysisOutputs:
    """Segment every time point of ``info`` and write table, plots and record into ``out_dir``
    (the caller holds its lock): :func:`analyze_store`'s work."""
    nt = info.n_times
    show = set(_montage_times(nt, montage_frames if plots else 0))
    fn = functools.partial(_task, store_path=str(info.path), params=p.model_dump())
    results = _mapper(map_fn, executor)(fn, [(t, t in show) for t in range(nt)])
    if (peak := _montage_peak(results, show)) is not None:  # the montage shows the crack peak too
        show = (show - {peak[1]}) | {peak[0]}
        results = [fn((peak[0], True)) if r.get("t") == peak[0] else r for r in results]

    for r in results:  # why a scan is missing, where the run recorded it (a blind probe: only "no data")
        error = info.scans[r["t"]].get("error") if r.get("t") is not None and r["t"] < len(info.scans) else None
        if r.get("status") == NOT_RECONSTRUCTED and isinstance(error, str) and error:
            r["status"] = f"not reconstructed: {error}"
        elif r.get("status") == NOT_RECONSTRUCTED and info.method == "imported":  # a file made elsewhere (probe AD)
            r["status"] = ALL_NON_FINITE
    table = build_table(times, results)
    _warn_if_noisy(info.path, table, p.defect_sigma)
    _warn_if_blurred(info.path, table)
    _warn_about_rings(info.path, table)
    _warn_about_particles(info.path, table, info.volume_shape[0])
    _warn_about_cracks_read_as_pores(info.path, table)
    _warn_if_segmentation_changes(out_dir, p)
    # everything is written beside the earlier analysis first (a full disk leaves that one whole),
    # then moved in, the table last: a run stopped half-way leaves no table beside new plots
    work = out_dir / ".analysis.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        atomic_write(work / "segmentation_params.json",
                     lambda q: q.write_text(json.dumps(p.model_dump(), indent=2) + "\n"))
        atomic_write(work / "analysis_record.json",
                     lambda q: q.write_text(json.dumps({**_record(info, temperature_csv, p), "inputs": inputs},
                                                       indent=2) + "\n"))
        figs: dict[str, Path] = {}
        if plots:
            figs = _write_plots(info, table, results, show, log, work, timezone)
        csv, pq = write_table(table, work)
        remove_analysis(out_dir)
        for f in ["segmentation_params.json", "analysis_record.json", *(q.name for q in figs.values()), pq.name,
                  csv.name]:
            os.replace(work / f, out_dir / f)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figs = {k: out_dir / q.name for k, q in figs.items()}
    csv, pq = out_dir / csv.name, out_dir / pq.name
    return AnalysisOutputs(table=table, csv=csv, parquet=pq, plots=figs, params=p)
