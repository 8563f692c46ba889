"""The experiment config: one YAML file that says what to reconstruct, how, where and on what.

Read with :func:`recon.yamlfile.read_yaml_mapping` (safe types; a key given twice is refused) and
validated by pydantic v2 models (:class:`ExperimentConfig`).
Paths inside the file are relative to the file's folder (DESIGN.md), so an experiment
folder can be moved whole. Validation is a set of small ``check_*`` functions (as HTTomo's
``yaml_checker``): :func:`check_config` runs them all and returns *every* problem, each
with its key path (``reconstruction.iterations: must be ≥ 1``), before any work starts.

Example (what ``flytomo init`` writes)::

    scans: raw/scan_*.h5              # a glob or a list of files
    temperature_log: raw/temperature.csv   # CSV with columns time_s, temperature_C
    temperature_log_start: null       # a log counting seconds from its own start: the date-time it reads 0 at
    scan_list: null                   # CSV: file, time_s (or a date-time), duration_s: times the files lack
    scan_duration_s: null             # seconds per scan, over what the files say (null: theirs, else start spacing)
    timezone: null                    # the clock of date-times written without a zone (scans, log): null = UTC,
                                      # an offset (+01:00) or a region (Europe/Berlin)
    reconstruction:
      method: mlem-flyscan            # fbp | mlem | mlem-flyscan | rrdb
      iterations: null                # N, auto (stop at the noise), or null: the default (50 MLEM, 70 modified MLEM)
      blur_angle_deg: null            # null: the file's value, else the median angle step
      center: null                    # a column, "auto" (found per scan), "middle" ((n-1)/2), or null (= auto)
      remove_outliers: null           # a zinger threshold in line integral (0.3), or null: off
      remove_stripes: null            # ring artifacts: mean | sorting | all (recon.io.preprocess), or null: off
      air_columns: null               # level each projection by its outer N columns (air), or null: off (0: off, no hint)
      pad_columns: auto               # a sample wider than the field: columns added per side, auto or 0 (off)
      reverse_rotation: false         # true: the stage turns against the recorded angles (the volume came out mirrored)
      rrdb: {model: null, input: null, blend: null}   # null: the shipped model(s) and its own input kind
    rows_per_chunk: 16
    output: recon/experiment.zarr
    analysis: {enabled: true, out: null, segmentation: {}}
    executor:
      kind: local                     # local | dask | mpi
      device: cpu                     # cpu | cuda
      threads_per_worker: null        # null: all cores (local), cores ÷ workers (Dask LocalCluster), 1 (MPI)
      dask: {workers: 2, scheduler_address: null, scheduler_file: null, jobqueue: null}
"""
from __future__ import annotations

import glob as _glob
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from recon.errors import FlytomoError
from recon.geometry import CENTER_CHOICES, MAX_BLUR_ANGLE_DEG
from recon.io.preprocess import STRIPE_METHODS, Corrections, stripe_method_problem
from recon.yamlfile import ConfigModel, read_yaml_mapping

METHOD_NAMES = ("fbp", "mlem", "mlem-flyscan", "rrdb")
EXECUTOR_KINDS = ("local", "dask", "mpi")
CONFIG_NAME = "experiment.yaml"


class RrdbOptions(ConfigModel):
    """The network stage of method ``rrdb``."""

    model: str | None = Field(None, description="weights file (relative to the config) or shipped model name")
    input: Literal["fbp", "mlem-flyscan", "mlem-flyscan+fbp"] | None = Field(
        None, description="reconstruction the network corrects; None = the model's own (its card)")
    blend: str | None = Field(None, description="a second network averaged in: 'auto' (None: the shipped FBP "
                              "network beside the shipped default one, on slices of 180 px or more), 'none', "
                              "or a weights file")
    blend_weight: float | None = Field(None, gt=0, lt=1, description="the second network's share of the mean; "
                                       "None = recon.methods.BLEND_WEIGHT")
    tile: int | None = Field(None, ge=16, description="tile size (pixels) for large slices; None = whole slice")
    zoom: float | Literal["auto"] | None = Field(
        None, description="resample each slice by this factor (1-4) before the network and back after it; auto "
                          "(None): one zoom for the series, the median of its first, middle and last scans judged on "
                          "the rows holding the sample (1.5 where its slices are under 300 px and quiet, for "
                          "flytomo's networks; else 1), kept in the store (hpc.engine.series_zoom)")

    @field_validator("zoom", mode="before")
    @classmethod
    def _zoom(cls, v: Any) -> Any:
        from recon.infer import MAX_ZOOM

        if v is None or v == "auto" or (isinstance(v, (int, float)) and not isinstance(v, bool) and 1 <= v <= MAX_ZOOM):
            return v
        raise ValueError(f"must be 'auto' or a number from 1 to {MAX_ZOOM:g}, got {v!r}")

    self_ensemble: bool = Field(False, description="average the network over the 8 rotations/flips of "
                                "each slice (8x the network time, about +0.1 dB)")
    amp: bool = Field(False, description="run the network in mixed precision: bfloat16 on the CPU (faster "
                      "where the CPU has AVX-512-BF16/AMX), float16 on CUDA; not bit-identical to float32")


class ReconstructionConfig(ConfigModel):
    method: Literal["fbp", "mlem", "mlem-flyscan", "rrdb"] = "mlem-flyscan"
    iterations: int | str | None = Field(
        None, description="MLEM iterations, or auto (each slice stops at the noise its flats measure); "
                          "None = the method's default")
    operator: Literal["fast", "subangle"] | None = Field(
        None, description="mlem-flyscan's fly-scan model: fast (R·B, the default) or subangle (the mean of R "
                          "over sub-angles: exact, better on small slices with many photons, 5-20x slower; "
                          "docs/benchmarks.md)")
    blur_angle_deg: float | None = Field(None, ge=0, le=MAX_BLUR_ANGLE_DEG, description="fly-scan blur Δθ; None = file or median step")
    center: float | Literal["auto", "middle"] | None = Field(
        None, description="rotation-axis column, 'auto' (found per scan), 'middle' ((n-1)/2) or None (= auto)")
    window: str | None = Field(None, description="FBP filter window (fbp, rrdb on fbp); None = ramp")
    remove_outliers: float | None = Field(  # strict: `yes` is not read as a threshold of 1
        None, gt=0, strict=True, description="zinger threshold in line-integral units (recon.io.preprocess.remove_outliers); "
                                "None = off")
    remove_stripes: Literal[STRIPE_METHODS] | None = Field(
        None, description="stripe (ring-artifact) removal (recon.io.preprocess.remove_stripes); None = off")
    air_columns: int | None = Field(
        None, ge=0, strict=True, description="outer detector columns per side that are air at every angle, by which "
                                "each projection is levelled (recon.io.preprocess.level_by_air); None = off, with a "
                                "hint where the edges look like a beam that changed after the flats "
                                "(recon.io.preprocess.beam_change_rows); 0 = off, no hint")
    correct_jitter: bool = Field(
        False, description="measure and undo each projection's shift off the ideal rotation (a stage that "
                           "wobbles between exposures; recon.io.alignment); needs the sample inside the field of view")
    correct_tilt: bool = Field(
        False, description="find the rotation axis's lean in the detector plane from its column in bands of rows "
                           "and turn each projection upright (recon.io.alignment.estimate_tilt)")
    reverse_rotation: bool = Field(
        False, strict=True, description="the stage turns the other way than the recorded angles grow in "
                                        "flytomo's convention (a volume mirrored against another tool's): each "
                                        "angle θ is read as −θ")
    pad_columns: int | Literal["auto"] = Field(
        "auto", description="virtual detector columns per side for a sample wider than the field of view "
                            "(recon.truncation); 'auto': from each scan's edge columns (0 where they are air); 0: off")
    rrdb: RrdbOptions = Field(default_factory=RrdbOptions)

    def corrections(self) -> Corrections:
        """The opt-in repairs of the line integrals this config asks for."""
        return Corrections(self.remove_outliers, self.remove_stripes, self.air_columns, self.correct_jitter,
                           self.correct_tilt)

    @field_validator("remove_stripes")
    @classmethod
    def _stripes(cls, v: str | None) -> str | None:
        if v is not None and (problem := stripe_method_problem(v)):
            raise ValueError(problem)
        return v

    @field_validator("iterations", mode="before")
    @classmethod
    def _iterations(cls, v: Any) -> Any:
        if v is None or v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        if isinstance(v, bool):
            raise ValueError(f"must be a number, got {v!r} (YAML reads yes/no/on/off as true/false)")
        if isinstance(v, int):
            raise ValueError(f"must be ≥ 1 or 'auto', got {v!r}")
        raise ValueError(f"must be a whole number ≥ 1 or 'auto' (stop each slice at its noise), got {v!r}")

    @field_validator("pad_columns", mode="before")
    @classmethod
    def _pad(cls, v: Any) -> Any:
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            return v
        raise ValueError("must be 'auto' or a whole number of columns ≥ 0 (0: off)")

    @field_validator("center", mode="before")
    @classmethod
    def _center(cls, v: Any) -> Any:
        if v is None or v in CENTER_CHOICES:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError("must be a detector column (a number), 'auto', 'middle' or null")
        return float(v)


class SlurmClusterConfig(BaseModel):
    """Settings passed to ``dask_jobqueue.SLURMCluster(**settings)``; ``jobs`` is how many to scale to."""

    model_config = ConfigDict(extra="allow")
    jobs: int = Field(1, ge=1)
    cores: int = Field(1, ge=1)
    processes: int = Field(1, ge=1)
    memory: str = "16GB"


class DaskConfig(ConfigModel):
    workers: int = Field(2, ge=1, description="LocalCluster workers (one process each)")
    scheduler_address: str | None = Field(None, description="tcp://host:port of a running scheduler")
    scheduler_file: str | None = Field(None, description="scheduler file (dask-mpi, dask scheduler --scheduler-file)")
    jobqueue: SlurmClusterConfig | None = Field(None, description="start workers as Slurm jobs (dask_jobqueue)")


class ExecutorConfig(ConfigModel):
    kind: Literal["local", "dask", "mpi"] = "local"
    device: Literal["cpu", "cuda"] = "cpu"
    threads_per_worker: int | None = Field(None, ge=1, description=(
        "torch threads in each worker process; null: this machine's cores (local executor), its cores ÷ workers "
        "(Dask LocalCluster), 1 (MPI ranks, Dask workers elsewhere)"))
    dask: DaskConfig = Field(default_factory=DaskConfig)

    def worker_threads(self) -> int:
        """The torch threads of each worker: ``threads_per_worker`` where set, else what its
        description says (the local executor used 1 of a laptop's cores unless told: 1.43x slower
        on 2 cores, up to 8x on 8)."""
        from hpc.executors.base import usable_cores

        if self.threads_per_worker is not None:
            return int(self.threads_per_worker)
        d = self.dask
        if self.kind == "local":
            return usable_cores()
        if self.kind == "dask" and not (d.scheduler_address or d.scheduler_file or d.jobqueue is not None):
            return max(1, usable_cores() // int(d.workers))
        return 1


class AnalysisConfig(ConfigModel):
    enabled: bool = True
    out: str | None = Field(None, description="output folder; None = next to the store")
    segmentation: dict[str, Any] = Field(default_factory=dict, description="analysis SegmentationParams")
    extrapolate: bool = False

    @field_validator("segmentation")
    @classmethod
    def _segmentation(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            from analysis.segment import SegmentationParams
        except ImportError:  # analysis not installed: keep the dict as it is
            return v
        return SegmentationParams(**v).model_dump(exclude_unset=True)


class ExperimentConfig(ConfigModel):
    scans: str | list[str]
    temperature_log: str | None = None
    temperature_log_start: str | float | None = Field(
        None, description="for a log whose clock counts seconds from its own start (Elapsed (s)): the date-time "
                          "it reads 0 at (2024-03-14 09:58:10, on timezone's clock where it has no zone) or Unix "
                          "seconds; null: the log's times are the scans' clock")
    scan_list: str | None = Field(None, description="a CSV of each scan file's start time (and duration, or "
                                  "temperature) where the files record none, over what they record "
                                  "(analysis.table.read_scan_list)")
    scan_duration_s: float | None = Field(None, gt=0, description="seconds per scan, over what the files record")
    timezone: str | None = Field(None, description="the clock of date-times written without a zone, in the scan "
                                                   "files and the log: UTC, an offset (+01:00) or a region "
                                                   "(Europe/Berlin); null: UTC, with a warning where it matters")
    reconstruction: ReconstructionConfig = Field(default_factory=ReconstructionConfig)
    rows_per_chunk: int = Field(16, ge=1, le=4096)
    output: str = "recon/experiment.zarr"
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @field_validator("temperature_log_start", mode="before")
    @classmethod
    def _log_start(cls, v: Any) -> Any:
        from datetime import date, datetime

        if isinstance(v, datetime):  # YAML reads an unquoted date-time as one
            return v.isoformat()
        if isinstance(v, date):
            raise ValueError(f"{v} is a date without a time of day: give the date-time the log reads 0 at")
        return v

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str | None) -> str | None:
        if v is not None:
            from recon.io.metadata import parse_zone

            parse_zone(v)  # ValueError: its one-line reason
        return v

    @field_validator("scans", mode="before")
    @classmethod
    def _scans(cls, v: Any) -> Any:
        if isinstance(v, str):
            if not v.strip():
                raise ValueError("must be a glob pattern or a list of files, got an empty string")
            return v
        if isinstance(v, (list, tuple)):
            if not v:
                raise ValueError("the list of scan files is empty")
            bad = [i for i, s in enumerate(v) if not isinstance(s, str) or not s.strip()]
            if bad:
                raise ValueError(f"entries {bad} are not file names")
            return list(v)
        raise ValueError("must be a glob pattern or a list of files")

    def method_options(self) -> dict[str, Any]:
        """Options for :func:`recon.methods.make_reconstructor` (only those the method takes)."""
        r = self.reconstruction
        opts: dict[str, Any] = {}
        # rrdb takes both: its first stage (the model's input kind) uses the one it needs
        if r.method in ("mlem", "mlem-flyscan", "rrdb") and r.iterations is not None:
            opts["iterations"] = r.iterations
        if r.method in ("fbp", "rrdb") and r.window is not None:
            opts["window"] = r.window
        if r.method == "mlem-flyscan" and r.operator is not None:
            opts["operator"] = r.operator
        if r.method == "rrdb":
            if r.rrdb.input is not None:
                opts["rrdb_input"] = r.rrdb.input
            if r.rrdb.model is not None:
                opts["model"] = r.rrdb.model
            if r.rrdb.blend is not None:
                opts["blend"] = r.rrdb.blend
            if r.rrdb.blend_weight is not None:
                opts["blend_weight"] = r.rrdb.blend_weight
            if r.rrdb.tile is not None:
                opts["tile"] = r.rrdb.tile
            if r.rrdb.zoom is not None:
                opts["zoom"] = r.rrdb.zoom
            if r.rrdb.self_ensemble:
                opts["self_ensemble"] = True
            if r.rrdb.amp:
                opts["amp"] = True
        return opts


# ───────────────────────────── messages with key paths ─────────────────────────────

_OPS = {"greater_than_equal": ("≥", "ge"), "greater_than": (">", "gt"),
        "less_than_equal": ("≤", "le"), "less_than": ("<", "lt")}


def _message(err: dict) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in _OPS:
        sym, key = _OPS[kind]
        return f"must be {sym} {ctx.get(key)}, got {err.get('input')!r}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {err.get('input')!r}"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be an integer, got {err.get('input')!r}"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number, got {err.get('input')!r}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, got {err.get('input')!r}"
    if kind in ("string_type",):
        return f"must be a string, got {err.get('input')!r}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "must be a mapping of keys"
    msg = str(err.get("msg", "invalid"))
    return msg.removeprefix("Value error, ")


def _key(loc: tuple) -> str:
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        elif str(p).startswith(("function-", "literal[", "float", "str", "list[", "int")) and out:
            continue  # a union member's tag, not a key
        else:
            out += ("." if out else "") + str(p)
    return out or "(top level)"


def _key_paths(model: Any = None, prefix: str = "") -> list[str]:
    """Every key path of the experiment config (``reconstruction.rrdb.input``, ...)."""
    from pydantic import BaseModel

    if model is None:
        model = ExperimentConfig
    out = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        out.append(path)
        ann = info.annotation
        sub = next((a for a in (ann, *getattr(ann, "__args__", ())) if isinstance(a, type) and issubclass(a, BaseModel)
                    and issubclass(a, ConfigModel)), None)
        if sub is not None:
            out += _key_paths(sub, path + ".")
        elif path == "analysis.segmentation":
            try:
                from analysis.segment import SegmentationParams
            except ImportError:
                continue
            out += _key_paths(SegmentationParams, path + ".")
    return out


def _home_of(name: str, where: str) -> str | None:
    """Where in the config a key ``name`` found at ``where`` belongs (``reconstruction.device``
    → ``executor.device``; ``rrdb_input`` → ``reconstruction.rrdb.input``), or None."""
    homes = [p for p in _key_paths() if p != where and (p.rsplit(".", 1)[-1] == name
                                                        or p.replace(".", "_").endswith("_" + name))]
    return homes[0] if len(homes) == 1 else None


def _near_key(loc: tuple) -> str | None:
    """The key of the config's section at ``loc[:-1]`` closest to the unknown ``loc[-1]`` (a
    typo: ``rows_per_chunks``, ``executer``), or None."""
    import difflib

    parent = ".".join(map(str, loc[:-1]))
    keys = [path.rsplit(".", 1)[-1] for path in _key_paths() if (path.rsplit(".", 1)[0] if "." in path else "") == parent]
    near = difflib.get_close_matches(str(loc[-1]), keys, n=1, cutoff=0.75)
    return near[0] if near else None


@dataclass
class Problem:
    """One thing wrong with an experiment: a key path (or file) and what is wrong."""

    key: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def validation_problems(err: ValidationError) -> list[Problem]:
    """Every pydantic error as a :class:`Problem` with a dotted key path."""
    seen, out = set(), []
    for e in err.errors():
        p = Problem(_key(tuple(e["loc"])), _message(e))
        if e["type"] == "extra_forbidden" and (near := _near_key(tuple(e["loc"]))):
            p.message += f" (did you mean '{near}'?)"
        elif e["type"] == "extra_forbidden" and (home := _home_of(str(e["loc"][-1]), p.key)):
            p.message += f" here (it is '{home}')"
        if (p.key, p.message) not in seen:
            seen.add((p.key, p.message))
            out.append(p)
    return out


# ───────────────────────────── the loaded experiment ─────────────────────────────


def resolve_path(base: Path, p: str | Path) -> Path:
    """``p`` with ``~`` expanded; a relative path is relative to ``base`` (the config's folder)."""
    p = Path(p).expanduser()
    return p if p.is_absolute() else base / p


@dataclass
class Experiment:
    """A validated config with its paths resolved against the config file's folder."""

    path: Path                      # the config file
    config: ExperimentConfig
    raw: dict                       # as read, for provenance
    problems: list[Problem] = field(default_factory=list)

    @property
    def base(self) -> Path:
        return self.path.parent

    def resolve(self, p: str | Path) -> Path:
        return resolve_path(self.base, p)

    @property
    def store_path(self) -> Path:
        return self.resolve(self.config.output)

    @property
    def temperature_log(self) -> Path | None:
        t = self.config.temperature_log
        return None if t is None else self.resolve(t)

    @property
    def scan_list(self) -> Path | None:
        t = self.config.scan_list
        return None if t is None else self.resolve(t)

    @property
    def analysis_out(self) -> Path:
        return analysis_out_path(self.config, self.base)

    def scan_files(self) -> list[Path]:
        """The scan files in experiment order (a glob in natural name order: scan_9 before scan_10)."""
        return resolve_scans(self.config.scans, self.base)[0]

    def method_options(self) -> dict[str, Any]:
        opts = self.config.method_options()
        for key in ("model", "blend"):  # weights files relative to the config (seed:PATH too)
            parts = weights_file(opts.get(key))
            if parts:
                opts[key] = parts[0] + str(self.resolve(parts[1]))
        return opts


def resolve_scans(scans: str | list[str], base: Path) -> tuple[list[Path], list[Problem]]:
    """Scans of ``scans`` (glob in :func:`recon.io.readers.natural_order`, or a list in its own order, relative
    to ``base``) and the problems found. A file
    that holds several scans (an NXtomo file with several entries) gives one
    ``FILE::ENTRY`` per scan, in the file's order; a list may name one entry so."""
    from recon.io.readers import natural_order, scan_entries, split_scan_ref

    problems: list[Problem] = []
    if isinstance(scans, str):
        literal = resolve_path(base, scans)
        if literal.is_file():  # a file's own name, brackets and all ('run [1].h5')
            found = [str(literal)]
        elif Path(scans).expanduser().is_absolute():
            found = _glob.glob(str(Path(scans).expanduser()))
        else:  # the pattern is the user's; the base folder's name is not (a '[' there is no glob)
            found = [str(Path(base) / p) for p in _glob.glob(scans, root_dir=str(base))]
        files = sorted((Path(p) for p in found if Path(p).is_file()), key=natural_order)
        if not files:
            hint = " ('[' opens a glob's set of characters: write [[] for a '[' in a name)" if "[" in scans else ""
            problems.append(Problem("scans", f"no file matches '{scans}' (in {base}){hint}"))
        return [Path(ref) for f in files for ref in scan_entries(f)], problems
    refs = []
    for i, s in enumerate(scans):
        p = resolve_path(base, s)
        file, entry = split_scan_ref(p)
        if not file.is_file():
            problems.append(Problem(f"scans[{i}]", f"no such file {file}"))
        refs += [p] if entry is not None or not file.is_file() else [Path(r) for r in scan_entries(p)]
    return refs, problems


def read_yaml(path: str | Path) -> dict:
    """The config file as a dict; unreadable files raise :class:`FlytomoError`."""
    return read_yaml_mapping(path, "experiment config", "scans:, output:, ...")


def apply_overrides(raw: dict, executor: str | None = None, device: str | None = None,
                    workers: int | None = None, scheduler_address: str | None = None,
                    scheduler_file: str | None = None, threads: int | None = None) -> dict:
    """A copy of ``raw`` with command-line choices written into ``executor`` (``threads``:
    ``threads_per_worker``)."""
    import copy

    raw = copy.deepcopy(raw)
    ex = raw.setdefault("executor", {}) if isinstance(raw.get("executor", {}), dict) else raw["executor"]
    if not isinstance(ex, dict):
        return raw
    if executor is not None:
        ex["kind"] = executor
    if device is not None:
        ex["device"] = device
    if threads is not None:
        ex["threads_per_worker"] = threads
    dask = ex.setdefault("dask", {}) if any(v is not None for v in (workers, scheduler_address, scheduler_file)) else None
    if dask is not None and isinstance(dask, dict):
        if workers is not None:
            dask["workers"] = workers
        if scheduler_address is not None:
            dask["scheduler_address"] = scheduler_address
        if scheduler_file is not None:
            dask["scheduler_file"] = scheduler_file
    return raw


# ───────────────────────────── checks: each small, all run ─────────────────────────────


def check_schema(raw: dict) -> tuple[ExperimentConfig | None, list[Problem]]:
    try:
        return ExperimentConfig.model_validate(raw), []
    except ValidationError as err:
        return None, validation_problems(err)


def _unknown_jobqueue_keys(jq: SlurmClusterConfig) -> list[Problem]:
    """Keys of ``executor.dask.jobqueue`` that ``SLURMCluster`` takes no argument of (a typo
    there passed every check and failed inside the queued driver job)."""
    import difflib
    import inspect

    from dask_jobqueue.core import Job, JobQueueCluster
    from dask_jobqueue.slurm import SLURMJob

    known = {"jobs"} | {n for f in (SLURMJob.__init__, Job.__init__, JobQueueCluster.__init__)
                        for n in inspect.signature(f).parameters if n not in ("self", "args", "kwargs")}
    out = []
    for key in sorted(set(jq.model_extra or {}) - known):
        near = difflib.get_close_matches(key, sorted(known), n=1)
        out.append(Problem(f"executor.dask.jobqueue.{key}", "not a dask_jobqueue.SLURMCluster setting"
                           + (f" (did you mean {near[0]}?)" if near else "")))
    return out


#: the one line for ``--executor mpi`` without mpi4py
MPI_MISSING = "mpi asked for, but mpi4py is not installed (pip install 'flytomo[mpi]')"


def check_executor(cfg: ExperimentConfig, units_here: bool = True) -> list[Problem]:
    """Problems of the executor section. ``units_here``: the units run on this machine's kind
    (False for ``flytomo submit``, whose jobs run on compute nodes)."""
    ex, out = cfg.executor, []
    d = ex.dask
    if d.scheduler_address and d.scheduler_file:
        out.append(Problem("executor.dask", "give scheduler_address or scheduler_file, not both"))
    if (d.scheduler_address or d.scheduler_file) and d.jobqueue is not None:
        out.append(Problem("executor.dask.jobqueue", "a jobqueue cluster starts its own scheduler; "
                                                     "drop scheduler_address / scheduler_file"))
    if ex.kind == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            out.append(Problem("executor.kind", "dask asked for, but dask.distributed is not installed "
                                                "(pip install 'flytomo[dask]')"))
    if d.jobqueue is not None:
        try:
            import dask_jobqueue  # noqa: F401
        except ImportError:
            if ex.kind == "dask":
                out.append(Problem("executor.dask.jobqueue", "dask_jobqueue is not installed"))
        else:
            out += _unknown_jobqueue_keys(d.jobqueue)
        extra = (d.jobqueue.model_extra or {}).get("job_extra_directives") if d.jobqueue is not None else None
        asks = " ".join(map(str, extra)) if isinstance(extra, (list, tuple)) else str(extra or "")
        if re.search(r"--(gpus|gres=gpu|gpus-per-\w+)", asks) and ex.device == "cpu":
            out.append(Problem("executor.device", "cpu, while executor.dask.jobqueue.job_extra_directives ask for "
                                                  "GPUs: the workers would leave them idle (device: cuda)",
                               warning=True))
    if ex.kind == "mpi":
        try:
            import mpi4py  # noqa: F401
        except ImportError:
            out.append(Problem("executor.kind", MPI_MISSING))
    if ex.device == "cuda":
        try:
            import torch
            if not torch.cuda.is_available():
                here = units_here and (ex.kind == "local" or (ex.kind == "dask" and not (
                    d.scheduler_address or d.scheduler_file or d.jobqueue)))
                out.append(Problem("executor.device", "cuda asked for, but torch sees no GPU on this machine" + (
                    ", where this executor runs every unit: use device: cpu (or --device cpu), or run it on a "
                    "GPU node" if here else " (fine if the units run on GPU nodes)"), warning=not here))
        except ImportError:  # pragma: no cover
            pass
    return out


def weights_file(spec: str | None) -> tuple[str, str] | None:
    """A model spec of ``reconstruction.rrdb`` that names a file → (prefix, path): ("seed:", PATH)
    for ``seed:PATH``, ("", PATH) for a path; None for a shipped name, 'auto', 'none' or None."""
    prefix = "seed:" if spec and spec.startswith("seed:") else ""
    path = spec[len(prefix):] if spec else ""
    return (prefix, path) if path and ("/" in path or path.endswith((".safetensors", ".pt", ".pth"))) else None


#: a fixed MLEM count under this share of the method's default gets a warning where the cracks
#: are analysed (few_iterations_problem)
SHORT_MLEM_SHARE = 0.6


def few_iterations_problem(cfg: ExperimentConfig) -> Problem | None:
    """A warning where MLEM stops early and cracks are analysed: a fixed count under
    SHORT_MLEM_SHARE of the method's default leaves thin cracks nearer the particle's level than
    the segmentation's halfway threshold, so the table reads too few, plausibly and without a word
    (blind probes V and W: 0 % cracks at 10 iterations, every row "ok")."""
    from recon.mlem import DEFAULT_ITERATIONS, DEFAULT_ITERATIONS_FLYSCAN

    r = cfg.reconstruction
    default = {"mlem": DEFAULT_ITERATIONS, "mlem-flyscan": DEFAULT_ITERATIONS_FLYSCAN}.get(r.method)
    if default is None or not isinstance(r.iterations, int) or not cfg.analysis.enabled:
        return None
    if r.iterations >= SHORT_MLEM_SHARE * default:
        return None
    return Problem("reconstruction.iterations", f"{r.iterations} is far under {r.method}'s {default}: MLEM stopped "
                   "this early leaves thin cracks too close to the particle's level for the analysis to find them "
                   "(a blind probe's 2.5-px cracks, 9.5 % of the volume: 0 % at 10 iterations, 5.3 at 20, 7.5 at 30, "
                   f"8.4 at 45, 8.8 at 70); keep {default} (null) where crack fractions matter", warning=True)


def check_reconstruction(cfg: ExperimentConfig, base: Path) -> list[Problem]:
    r, out = cfg.reconstruction, []
    if (few := few_iterations_problem(cfg)) is not None:
        out.append(few)
    if r.iterations is not None and r.method == "fbp":
        out.append(Problem("reconstruction.iterations", "method fbp takes no iterations", warning=True))
    if r.window is not None and r.method in ("mlem", "mlem-flyscan"):
        out.append(Problem("reconstruction.window", f"method {r.method} uses no FBP filter window: unused",
                           warning=True))
    if r.operator is not None and r.method != "mlem-flyscan":
        out.append(Problem("reconstruction.operator", f"only mlem-flyscan takes a fly-scan operator, not {r.method}",
                           warning=True))
    if r.window is not None:
        try:
            from recon.fbp import WINDOWS
            if r.window not in WINDOWS:
                out.append(Problem("reconstruction.window", f"unknown FBP window '{r.window}'; choose one of "
                                                            f"{', '.join(WINDOWS)}"))
        except ImportError:  # pragma: no cover
            pass
    for key in ("model", "blend"):
        parts = weights_file(getattr(r.rrdb, key)) if r.method == "rrdb" else None
        if parts:
            p = resolve_path(base, parts[1])
            if not p.is_file():
                out.append(Problem(f"reconstruction.rrdb.{key}", f"no such weights file {p}"))
    return out


def check_scans(cfg: ExperimentConfig, base: Path,
                open_files: bool = True) -> tuple[list[Path], list[Problem], tuple[int, int] | None]:
    """Scan files exist; with ``open_files`` each is opened (metadata only) and shapes compared.
    Returns the files, the problems and the detector's (rows, columns) where every scan shares
    one (None where none was opened)."""
    files, out = resolve_scans(cfg.scans, base)
    if not open_files or not files:
        return files, out, None
    try:
        from hpc.planner import RECENT_WRITE_S, angle_span, file_age_s, short_scan_problem, unlit_tail_problem
        from recon.io import open_scan
        from recon.io.preprocess import MAX_DROPPED_FRACTION, unlit_frames
    except ImportError:
        out.append(Problem("scans", "cannot open scans: recon.io.open_scan is not available", warning=True))
        return files, out, None
    shapes: dict[tuple, list[str]] = {}
    counts: dict[Path, int] = {}  # projections per readable scan
    spans: dict[Path, float] = {}  # degrees its angles cover
    unread: dict[str, list[Path]] = {}  # problem: the files that have it
    dark: list = []  # (file, UnlitFrames): many frames without light mid-scan
    for f in files:
        if not f.is_file():
            continue
        try:
            reader = open_scan(f)
            n_angles, n_rows, n_cols = (int(s) for s in reader.shape)
            shapes.setdefault((n_rows, n_cols), []).append(f.name)
            counts[f] = n_angles
            spans[f] = angle_span(reader.angles_deg)
            unlit = unlit_frames(reader)  # what recon refuses, seen in a few frames
            if unlit.tail and (age := file_age_s(f)) < RECENT_WRITE_S:  # as run judges it: a warning, run goes on
                out.append(Problem("scans", f"{os.path.normpath(f)}: {unlit_tail_problem(age)}", warning=True))
            elif unlit.tail:
                unread.setdefault("its last projections hold no light (counts at the dark level, or NaN): a scan "
                                  "still being written, or the beam lost?", []).append(f)
            elif unlit.many_dark:
                dark.append((f, unlit))
        except FlytomoError as err:
            unread.setdefault(err.problem, []).append(f)
        except Exception as err:  # a reader bug or an exotic file: still one line
            unread.setdefault(f"cannot be read ({type(err).__name__}: {err})", []).append(f)
    for problem, bad in unread.items():  # 180 TIFF projections: one line, not 180
        for f in bad[:2] if len(bad) > 3 else bad:
            out.append(Problem("scans", f"{os.path.normpath(f)}: {problem}"))  # not exp/../raw/x.h5
        if len(bad) > 3:
            rest = [f.name for f in bad[2:]]
            names = ", ".join(rest) if len(rest) <= 10 else f"{rest[0]} … {rest[-1]}"
            out.append(Problem("scans", f"{len(bad) - 2} more files likewise ({names})"))
    for f, unlit in dark[:3]:  # a warning: judged on a sample of the frames
        repairs = f"repairs up to {MAX_DROPPED_FRACTION:.0%} of a scan's frames and refuses more"
        refused = len(unlit.dark) >= 2.5 * MAX_DROPPED_FRACTION * unlit.sampled
        verdict = f"recon will refuse it (it {repairs})" if refused else f"recon {repairs}"
        out.append(Problem("scans", f"{os.path.normpath(f)}: {len(unlit.dark)} of {unlit.sampled} projections read "
                                    f"across it hold no light (frames {', '.join(map(str, unlit.dark[:6]))}"
                                    f"{' …' if len(unlit.dark) > 6 else ''}; the beam lost mid-scan?): {verdict}; "
                                    "run goes on with the others", warning=True))
    if len(dark) > 3:
        out.append(Problem("scans", f"{len(dark) - 3} more files likewise ({', '.join(f.name for f, _ in dark[3:])})",
                           warning=True))
    if len(counts) > 1:  # as run judges them (hpc.planner.short_scan_problem): a warning here, run goes on
        typical = float(statistics.median(counts.values()))
        typical_span = float(statistics.median(spans.values()))
        for f, n_angles in counts.items():
            if (found := short_scan_problem(f, n_angles, typical, spans[f], typical_span)) is not None:
                out.append(Problem("scans", f"{os.path.normpath(f)}: {found[0]}", warning=True))
    if len(shapes) > 1:
        desc = "; ".join(f"{r}×{c} rows×columns: {len(v)} scan(s), e.g. {v[0]}" for (r, c), v in shapes.items())
        out.append(Problem("scans", f"scans differ in detector size ({desc}); one store needs one size: "
                                    "list the scans of one size under scans: (the others in a second config with "
                                    "another output:), or bin or crop them alike first"))
    return files, out, (next(iter(shapes)) if len(shapes) == 1 else None)


def read_scan_list(path: Path, timezone: str | None = None) -> Any:
    """The config's scan list (:func:`analysis.table.read_scan_list`): a DataFrame of file,
    time_s, duration_s, temperature_C."""
    from analysis.table import read_scan_list as read

    return read(path, timezone)


def check_scan_list(cfg: ExperimentConfig, base: Path, files: list[Path]) -> list[Problem]:
    """The scan list reads, and names the scans (a scan it does not name keeps its file's times:
    a warning)."""
    if cfg.scan_list is None:
        return []
    try:
        listed = read_scan_list(resolve_path(base, cfg.scan_list), cfg.timezone)
    except FlytomoError as err:
        return [Problem("scan_list", f"{err.where}: {err.problem}" if err.where else err.problem)]
    from analysis.table import scan_list_rows

    names = scan_list_rows(listed)
    missing = [f.name for f in files if f.name not in names and f.stem not in names]
    if missing:
        more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
        return [Problem("scan_list", f"does not list {missing[0]}{more}: its file's own times are used", warning=True)]
    return []


def check_temperature_log(cfg: ExperimentConfig, base: Path) -> list[Problem]:
    if cfg.temperature_log is None:
        return [Problem("temperature_log", "not given: temperatures come from the scan files only", warning=True)]
    p = resolve_path(base, cfg.temperature_log)
    try:
        read_temperature_log(p, cfg.timezone, cfg.temperature_log_start)
    except FlytomoError as err:
        return [Problem("temperature_log", f"{err.where}: {err.problem}" if err.where else err.problem)]
    return []


def check_log_covers_scans(cfg: ExperimentConfig, base: Path) -> list[Problem]:
    """Every scan's time window lies inside the temperature log (else the analysis cannot
    give it a temperature): an error when the analysis runs without ``extrapolate``."""
    from hpc.engine import log_problems
    from hpc.planner import survey_scans

    p = resolve_path(base, cfg.temperature_log)
    files, _ = resolve_scans(cfg.scans, base)
    log = read_temperature_log(p, cfg.timezone, cfg.temperature_log_start)
    listed = read_scan_list(resolve_path(base, cfg.scan_list), cfg.timezone) if cfg.scan_list else None
    plans = survey_scans(files, log=log, scan_duration_s=cfg.scan_duration_s, center="middle",
                         pad_columns=0, timezone=cfg.timezone, listed=listed)  # times only
    unusable, to_warn = log_problems(plans, log, cfg.analysis.extrapolate, p)
    more = f" (+{len(to_warn) - 1} more)" if len(to_warn) > 1 else ""
    warned = [Problem("temperature_log", to_warn[0] + more, warning=True)] if to_warn else []
    return warned + ([Problem("temperature_log", unusable, warning=not cfg.analysis.enabled)] if unusable else [])


def analysis_out_path(cfg: ExperimentConfig, base: Path) -> Path:
    """Where the analysis goes: ``analysis.out``, else ``STEM_analysis`` beside the store."""
    if cfg.analysis.out is not None:
        return resolve_path(base, cfg.analysis.out)
    store = resolve_path(base, cfg.output)
    stem = store.name[:-5] if store.name.endswith(".zarr") else store.name
    return store.parent / f"{stem}_analysis"


def check_output(cfg: ExperimentConfig, base: Path, inputs: list[Path] | tuple = ()) -> list[Problem]:
    """The store path is writable, and is a store (or nothing yet): never a file, a folder of
    other things, or a folder holding a scan or the log (``inputs``), which ``--restart``
    would empty."""
    import os

    from recon.io._atomic import first_unwritable, is_zarr_folder

    p = resolve_path(base, cfg.output)
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        return [Problem("output", f"cannot write under {parent}")]
    if p.exists() and not p.is_dir():
        return [Problem("output", f"{p} exists and is not a store folder")]
    target = p.resolve()
    held = [f for f in inputs if target == Path(f).resolve() or target in Path(f).resolve().parents]
    if held:
        return [Problem("output", f"{p} holds the input {held[0]}: the store needs a folder of its own")]
    if p.is_dir() and not is_zarr_folder(p) and not (p / ".flytomo").is_dir() and any(p.iterdir()):
        names = sorted(q.name for q in p.iterdir())
        return [Problem("output", f"{p} is a folder of other things ({', '.join(names[:3])}"
                                  f"{', ...' if len(names) > 3 else ''}), not a store: name a new folder")]
    if (locked := first_unwritable(p)) is not None:  # found before a run writes, or --restart empties, any of it
        return [Problem("output", f"{locked} cannot be written (read-only, or another user's): a run can neither "
                                  "write the store nor --restart empty it")]
    if not cfg.analysis.enabled:
        return []
    analysis = analysis_out_path(cfg, base)
    if analysis.exists() and not analysis.is_dir():
        return [Problem("analysis.out", f"{analysis} exists and is not a folder")]
    if (locked := first_unwritable(analysis)) is not None:
        return [Problem("analysis.out", f"{locked} cannot be written (read-only, or another user's)")]
    return []


class TemperatureLog(NamedTuple):
    """A temperature log as the planner uses it: times (s) and temperatures (°C), sorted by
    time; ``naive``: its date-times carry no zone and none was given (read as UTC)."""

    time_s: Any  # (n,) float64
    temperature_C: Any  # (n,) float64
    naive: bool = False


def read_temperature_log(path: Path, timezone: str | None = None,
                         start: str | float | None = None) -> TemperatureLog:
    """The log at ``path`` (naive date-times on the clock of ``timezone``; a clock from its own
    0 moved to ``start``); a bad log raises :class:`FlytomoError`. The one reader is
    :func:`analysis.table.read_temperature_log`."""
    from analysis.table import read_temperature_log as _read

    df = _read(path, timezone, start)
    return TemperatureLog(df["time_s"].to_numpy(float), df["temperature_C"].to_numpy(float),
                          bool(df.attrs.get("naive_times")))


def check_config(path: str | Path, raw: dict | None = None, open_files: bool = True,
                 units_here: bool = True) -> tuple[Experiment | None, list[Problem]]:
    """Run every check; return the experiment (None when the schema fails) and all problems.

    ``raw`` (a dict already read from ``path``, e.g. with overrides applied) skips reading.
    ``units_here``: the units will run on this machine (not for ``flytomo submit``).
    Warnings are problems with ``warning=True``: reported, but not fatal.
    """
    # elsewhere/../exp/experiment.yaml: every path it gives is named without the '..'
    path = Path(path).resolve() if raw is None else Path(os.path.abspath(path))
    raw = read_yaml(path) if raw is None else raw
    base = path.parent
    cfg, problems = check_schema(raw)
    if cfg is None:
        # the file checks still run on what can be read, so one pass shows everything
        scans = raw.get("scans")
        if isinstance(scans, (str, list)) and scans and all(isinstance(s, str) for s in (scans if isinstance(scans, list) else [scans])):
            problems += resolve_scans(scans, base)[1]
        log = raw.get("temperature_log")
        if isinstance(log, str):
            p = Path(log) if Path(log).is_absolute() else base / log
            try:
                read_temperature_log(p)
            except FlytomoError as err:
                problems.append(Problem("temperature_log", f"{err.where}: {err.problem}"))
        return None, problems
    problems += check_executor(cfg, units_here)
    problems += check_reconstruction(cfg, base)
    scan_files, scan_problems, detector = check_scans(cfg, base, open_files=open_files)
    problems += scan_problems
    log_problems = check_temperature_log(cfg, base) + check_scan_list(cfg, base, scan_files)
    problems += log_problems
    if open_files and not scan_problems and not any(not p.warning for p in log_problems) and cfg.temperature_log:
        problems += check_log_covers_scans(cfg, base)
    log_file = [resolve_path(base, cfg.temperature_log)] if cfg.temperature_log else []
    problems += check_output(cfg, base, [*scan_files, *log_file])
    exp = Experiment(path=path, config=cfg, raw=raw, problems=problems)
    center = cfg.reconstruction.center
    if detector is not None and isinstance(center, float) and not -0.5 <= center <= detector[1] - 0.5:
        problems.append(Problem("reconstruction.center", f"{center:g} is outside the detector's columns "
                                f"0-{detector[1] - 1}: the rotation axis must project onto the detector "
                                "(a column inside, or auto)"))
    if open_files and detector is not None and not any(not p.warning for p in problems):
        from hpc.engine import store_problem  # what 'flytomo run' would refuse in an existing store

        if (line := store_problem(exp, scan_files, detector)) is not None:
            problems.append(Problem("output", line))
    return exp, problems


def load_experiment(path: str | Path, raw: dict | None = None) -> Experiment:
    """Validate the config (schema, executor, method; not the scan files, which the engine
    opens itself and reports per scan) or raise one :class:`FlytomoError` naming all problems."""
    exp, problems = check_config(path, raw=raw, open_files=False)
    errors = [p for p in problems if not p.warning]
    if errors or exp is None:
        first = "; ".join(str(p) for p in errors[:3])
        more = f" (+{len(errors) - 3} more; run 'flytomo check {path}')" if len(errors) > 3 else ""
        raise FlytomoError(path, f"{first}{more}")
    return exp


def default_config(scans: str | list[str], temperature_log: str | None, output: str = "recon/experiment.zarr",
                   method: str = "mlem-flyscan") -> dict:
    """The dict ``flytomo init`` writes: runnable defaults, every section present."""
    cfg = ExperimentConfig(scans=scans, temperature_log=temperature_log, output=output,
                           reconstruction=ReconstructionConfig(method=method))
    return cfg.model_dump(mode="json")


def dump_config(cfg: dict, path: Path, header: str = "") -> None:
    text = yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False, allow_unicode=True)
    path.write_text((header + "\n" if header else "") + text)
