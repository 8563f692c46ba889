"""Train a correction network on simulated fly-scan reconstructions (``flytomo train``).

The way through::

    pair source (index → input slice, truth slice)       deterministic in (seed, index)
      ──generate once──► DATA/{train,validation}/       (.npy, memory-mapped; DATA = data_dir,
                                                          default RUN/data; checked against the
                                                          config; a killed generation resumes;
                                                          more pairs extend the set, fewer read
                                                          its first ones)
      ──normalize per slice (input's scale, truth divided by the same number)──►
      ──random patches, deterministic in (seed, step)──► Adam, L1 or MSE ──► checkpoints
      ──validation PSNR/SSIM (recon.metrics) ──► RUN/metrics.jsonl
      ──end──► RUN/NAME.safetensors + RUN/NAME.json (model card)

Resuming: ``RUN/checkpoint.pt`` (written atomically every ``checkpoint_every`` steps and
when the run is stopped by SIGTERM/SIGINT or a time limit) holds the model, the Adam
state and the step; batches and learning rate are functions of (seed, step) only, so a
killed and resumed run ends with the same weights as an uninterrupted one (bit for bit on
the CPU; on CUDA up to cuDNN's non-deterministic kernels). Resuming with a config that
changes the result is refused, naming the changed keys.

A pair source is any callable ``source(index) -> (input, truth)`` or ``(input, truth,
params)``, with input and truth (n, n) float32 in attenuation per pixel, that gives the
same pair for the same index. :class:`SimulatedPairs` is the real one (phantom → fly-scan
simulation → line integrals → FBP or MLEM); :class:`SyntheticPairs` (blur + noise) is a
cheap stand-in for tests.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from recon.device import cpu_bf16_or_float32
from recon.errors import FlytomoError
from recon.yamlfile import ConfigModel, read_yaml_mapping

__all__ = [
    "DataConfig",
    "OptimConfig",
    "PairSet",
    "SimulatedPairs",
    "SyntheticPairs",
    "TrainConfig",
    "TrainResult",
    "build_pair_set",
    "load_config",
    "lr_at",
    "make_pair_sources",
    "sample_batch",
    "train",
]

PairSource = Callable[[int], tuple]

#: offsets of the pair seeds used when recon.phantoms has no such constants
_FALLBACK_SEED0 = {"train": 1_000_000, "validation": 2_000_000}


# --------------------------------------------------------------------------- config

# what each [low, high] range of DataConfig must also satisfy, and the message where it does not
_RANGE_BOUNDS: dict[str, tuple[Callable[[tuple], bool], str]] = {
    "n_angles": (lambda v: v[0] >= 2, "needs at least 2 projections"),
    "photons": (lambda v: v[0] > 0, "photon counts must be > 0"),
    "blur_angle_deg": (lambda v: v[0] >= 0, "blur angle must be ≥ 0"),
    "matrix": (lambda v: v[0] >= 0, "matrix attenuation (relative to the sample's) must be ≥ 0"),
    "object_scale": (lambda v: 0 < v[0] and v[1] <= 1,
                     "object scale is a fraction of the field: 0 < low ≤ high ≤ 1"),
}


class DataConfig(ConfigModel):
    """How training pairs are made (ranges are [low, high], drawn per pair)."""

    source: Literal["simulated", "synthetic"] = "simulated"
    families: list[str] = ["heterogeneous", "cracked", "network", "radial"]
    image_size: int = Field(128, ge=16)
    n_train: int = Field(256, ge=1)
    n_validation: int = Field(16, ge=1)
    n_angles: tuple[int, int] = (30, 180)
    photons: tuple[float, float] = (500.0, 10000.0)    # I0, drawn log-uniformly
    blur_angle_deg: tuple[float, float] = (0.5, 6.0)
    center_offset_px: tuple[float, float] = (-2.0, 2.0)
    n_sub: int = Field(8, ge=1)                          # sub-angles of the simulation
    slices_per_scan: int = Field(16, ge=1)               # phantoms sharing one simulated scan
    method_options: dict[str, Any] = {}                  # options of the input method
    object_scale: tuple[float, float] = (1.0, 1.0)       # phantom diameter / field, per pair
    matrix: tuple[float, float] = (0.0, 0.0)             # faint medium around the sample, per pair
    # where the medium may go: "outside" the sample's closed outline (never into its cracks,
    # pores or cells), or every "empty" pixel (stages 3/3b: it also filled enclosed voids)
    matrix_region: Literal["outside", "empty"] = "outside"
    patch: int = Field(64, ge=8)
    # training pair i has phantom seed TRAIN_SEED0 + first_seed + i (validation pairs keep
    # theirs): a fine-tune on phantoms its parent never saw
    first_seed: int = Field(0, ge=0, le=500_000)

    @field_validator("n_angles", "photons", "blur_angle_deg", "center_offset_px", "object_scale", "matrix")
    @classmethod
    def _ordered_within_bounds(cls, v, info):
        if v[0] > v[1]:
            raise ValueError("range must be [low, high] with low ≤ high")
        bounds = _RANGE_BOUNDS.get(info.field_name)
        if bounds is not None and not bounds[0](v):
            raise ValueError(bounds[1])
        return v

    @model_validator(mode="after")
    def _patch_fits(self):
        if self.patch > self.image_size:
            raise ValueError(f"patch ({self.patch}) larger than image_size ({self.image_size})")
        return self


class OptimConfig(ConfigModel):
    """Optimisation: Adam with a pixel loss, learning rate a function of the step."""

    steps: int = Field(3000, ge=1)
    batch: int = Field(8, ge=1)
    lr: float = Field(2e-4, gt=0)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    lr_final: float = Field(0.01, ge=0, le=1)            # cosine ends at lr × lr_final
    warmup_steps: int = Field(0, ge=0)
    loss: Literal["l1", "mse"] = "l1"
    # extra weight on thin dark gaps of the truth (cracks, pores; see crack_weights): a pixel
    # that is a full gap in solid counts 1 + crack_weight times; 0 = the plain pixel loss
    crack_weight: float = Field(0.0, ge=0)
    # share of (1 − SSIM) in the loss (see ssim_index, pixel_loss): (1 − w)·pixel loss + w·(1 − SSIM); 0 = none
    ssim_weight: float = Field(0.0, ge=0, le=1)
    checkpoint_every: int = Field(100, ge=1)
    validate_every: int = Field(250, ge=1)
    amp: bool = True                                     # mixed precision, CUDA only
    # bfloat16 autocast with channels-last tensors on CPU, where oneDNN has AMX / AVX-512-BF16
    # kernels: 2-3× faster steps on such CPUs (fp32 master weights; rounding differs from fp32);
    # float32, with a warning, on a CPU without them (emulated bfloat16: ~4× slower steps)
    cpu_bf16: bool = False


class TrainConfig(ConfigModel):
    """A training run (``jobs/train.yaml``)."""

    name: str = Field("rrdb-fbp", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    run_dir: str = "runs/{name}"                         # relative to the config's folder
    # the simulated pairs (train/, validation/); None: RUN_DIR/data. Runs that name the same
    # folder share their pairs: one asking for more than it holds simulates only the rest
    data_dir: str | None = None                          # relative to the config's folder
    seed: int = 0                                        # model init and patch sampling
    device: str = "auto"                                 # auto | cpu | cuda | cuda:N
    threads: int | None = Field(None, ge=1)              # torch CPU threads
    workers: int = Field(1, ge=1)                        # processes simulating training pairs
    input_kind: Literal["fbp", "mlem", "mlem-flyscan", "mlem-flyscan+fbp"] = "fbp"
    normalization: Literal["seed", "p95", "none"] = "seed"
    model: dict[str, Any] = {"architecture": "rrdb", "nf": 32, "nb": 3, "gc": 32,
                             "dense_convs": 3, "global_residual": True}
    data: DataConfig = DataConfig()
    training: OptimConfig = OptimConfig()
    init: str | None = None                              # start from these weights (fine-tune)

    @field_validator("device")
    @classmethod
    def _device(cls, v):
        if v != "auto":
            try:
                torch.device(v)
            except (RuntimeError, ValueError):
                raise ValueError(f"not a torch device: {v!r}") from None
        return v


def _config_error(where, err: ValidationError) -> FlytomoError:
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"]) or "(top level)"
    more = f" (+{len(err.errors()) - 1} more problems)" if len(err.errors()) > 1 else ""
    return FlytomoError(where, f"key '{key}': {e['msg']}{more}")


def load_config(path: str | Path, **overrides) -> tuple[TrainConfig, Path]:
    """Read and validate a training config (YAML). Returns (config, run_dir resolved
    against the config file's folder). ``overrides`` are top-level keys (None ignored)."""
    path = Path(path)
    raw = read_yaml_mapping(path, "training config", "name:, model:, data:, training:, ...")
    given = {k: v for k, v in overrides.items() if v is not None}
    raw.update({k: v for k, v in given.items() if k not in ("steps", "batch")})
    try:
        TrainConfig.model_validate(raw)  # the file's training section as written: --steps hides none of its errors
        tuning = {k: v for k, v in given.items() if k in ("steps", "batch")}
        if tuning:
            raw["training"] = {**(raw.get("training") or {}), **tuning}
        cfg = TrainConfig.model_validate(raw)
    except ValidationError as err:
        raise _config_error(path, err) from None
    _check_model(cfg, path)
    run_dir = Path(cfg.run_dir.format(name=cfg.name))
    if not run_dir.is_absolute():
        run_dir = (path.parent / run_dir).resolve()
    for k in ("init", "data_dir"):
        v = getattr(cfg, k)
        prefix = "seed:" if k == "init" and v is not None and v.startswith("seed:") else ""
        if v is not None and v[len(prefix):] and not Path(v[len(prefix):]).is_absolute():
            cfg = cfg.model_copy(update={k: prefix + str((path.parent / v[len(prefix):]).resolve())})
    return cfg, run_dir


def model_config(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg.model`` with ``in_nc`` set to the input kind's channel count (an ``in_nc`` given
    in the config must agree)."""
    from recon.weights import channel_kinds

    n = len(channel_kinds(cfg.input_kind))
    if int(cfg.model.get("in_nc", n)) != n:
        raise FlytomoError("model.in_nc", f"input_kind {cfg.input_kind!r} has {n} channel(s), "
                           f"not {cfg.model['in_nc']}")
    return {**cfg.model, "in_nc": n}


def _check_model(cfg: TrainConfig, where) -> None:
    from recon.rrdb import build_model

    try:
        build_model(model_config(cfg))
    except FlytomoError as err:
        raise FlytomoError(where, f"key '{err.where}': {err.problem}") from None
    except TypeError as err:
        raise FlytomoError(where, f"key 'model': {err}") from None


# --------------------------------------------------------------------------- pair sources

class SyntheticPairs:
    """Cheap stand-in pairs: truth = random ellipses (attenuation ~0.01/pixel), input =
    truth blurred (Gaussian σ 1.5 px) plus Gaussian noise. Deterministic in (seed, index)."""

    def __init__(self, size: int, seed: int = 0, noise: float = 0.1) -> None:
        self.size, self.seed, self.noise = int(size), int(seed), float(noise)

    def __call__(self, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
        from scipy.ndimage import gaussian_filter

        n = self.size
        rng = np.random.default_rng([self.seed, int(index)])
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) - (n - 1) / 2
        truth = np.zeros((n, n), np.float32)
        for _ in range(int(rng.integers(3, 8))):
            cy, cx = rng.uniform(-0.3, 0.3, 2) * n
            ay, ax = rng.uniform(0.05, 0.25, 2) * n
            t = rng.uniform(0, np.pi)
            u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
            v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
            truth[(u / ax) ** 2 + (v / ay) ** 2 <= 1] += rng.uniform(0.3, 1.0)
        truth *= 0.01
        blurred = gaussian_filter(truth, 1.5)
        inp = blurred + rng.normal(0, self.noise * 0.01, truth.shape).astype(np.float32)
        return inp.astype(np.float32), truth, {"kind": "synthetic"}


def _solid(sample: np.ndarray) -> np.ndarray:
    """(n, n) bool: the sample's pixels, those at ≥ 1 % of its maximum (phantoms carry a
    ~1e-4 relative floor where they are empty)."""
    return sample >= 0.01 * float(sample.max(initial=0.0))


def sample_outline(sample: np.ndarray, closing_px: int = 5) -> np.ndarray:
    """(n, n) bool: the sample's closed outline — its pixels above 1 % of the maximum, closed
    by a disk of radius ``closing_px`` (bridges cracks up to ~2·closing_px wide where they
    open at the surface) with every enclosed hole filled. Cracks, pores and cells lie inside."""
    from scipy.ndimage import binary_closing, binary_fill_holes

    r = int(closing_px)
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    solid = _solid(sample)
    if not solid.any():
        return solid
    padded = np.pad(solid, r + 1)  # closing must not stick to the field's border
    closed = binary_closing(padded, structure=x * x + y * y <= r * r)[r + 1:-r - 1, r + 1:-r - 1]
    return binary_fill_holes(closed | solid)


def _matrix(sample: np.ndarray, level: tuple[float, float], rng: np.random.Generator,
            fill: str = "outside") -> np.ndarray:
    """(n, n) float32: a faint medium (binder, electrolyte, a support) filling a large region of
    the field around ``sample`` — an ellipse cut by a random line, inside the reconstruction
    disk, where the sample is empty — at attenuation ``level`` (drawn) × the sample's median
    non-zero value, with a smooth ±20 % texture. Real slices show one (the beamline slice in
    ../shared); phantoms alone do not. ``fill="outside"`` keeps it out of the sample's
    :func:`sample_outline` (a crack stays empty, as in a heating run); ``"empty"`` lets it
    fill every empty pixel, enclosed voids too (stages 3/3b, which learned to grey cracks)."""
    from scipy.ndimage import gaussian_filter

    from recon.phantoms import support_mask

    n = sample.shape[0]
    if not (sample > 0).any():
        return np.zeros_like(sample)
    empty = ~_solid(sample)
    value = float(rng.uniform(*level)) * float(np.median(sample[~empty]))
    y, x = (np.mgrid[:n, :n] - (n - 1) / 2.0) / (n / 2.0)
    t = rng.uniform(0, np.pi)
    u, v = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
    a, b = rng.uniform(0.6, 1.2, 2)
    region = (u / a) ** 2 + (v / b) ** 2 <= 1
    phi, d = rng.uniform(0, 2 * np.pi), rng.uniform(-0.6, 0.9)
    region &= x * np.cos(phi) + y * np.sin(phi) <= d
    # white noise smoothed over σ = n/32 px has sd ≈ 1/(2√π σ) ≈ 0.28/σ: × 3.5 σ gives sd ≈ 1
    texture = 1 + 0.2 * gaussian_filter(rng.standard_normal((n, n)), n / 32) * (n / 32) * 3.5
    where = region & support_mask(n) & empty
    if fill == "outside":
        where &= ~sample_outline(sample)
    out = value * where * np.clip(texture, 0.6, 1.4)
    return out.astype(np.float32)


class SimulatedPairs:
    """The real pairs: phantom → fly-scan simulation → line integrals → ``input_kind``
    reconstruction, with the scan parameters drawn from ``data``'s ranges.

    Pairs come in groups of ``data.slices_per_scan``: the phantoms of a group are the
    slices of one simulated scan, so the projectors (the costly part) are built once per
    group; projection count, photons (I0, log-uniform), blur angle and center offset are
    drawn per group from a NumPy generator seeded with (seed0, group). Pair ``index`` has
    phantom seed ``seed0 + index`` and family ``families[index % len(families)]``; every
    pair is a pure function of (data config, input kind, seed0, index). The reconstruction
    knows the true center and blur angle. A multi-channel kind ("mlem-flyscan+fbp") gives
    inputs (C, n, n), one reconstruction per channel from the same sinograms.
    ``device`` runs the projections and reconstructions (the costly part: on a GPU a pair
    costs a small fraction of its CPU time); the noise is drawn on the CPU, so another device
    changes a pair by rounding only.
    """

    def __init__(self, data: DataConfig, input_kind: str, seed0: int, device: str = "cpu") -> None:
        self.data, self.input_kind, self.seed0, self.device = data, input_kind, int(seed0), str(device)
        try:
            from recon import methods, phantoms, simulate  # noqa: F401
        except ImportError as err:
            raise FlytomoError("data.source", f"simulated pairs need {err.name}, which is not "
                               "available in this installation") from None
        from recon.methods import METHODS
        from recon.phantoms import ALL_FAMILIES

        bad = [f for f in data.families if f not in ALL_FAMILIES]
        if bad or not data.families:
            raise FlytomoError("data.families", f"unknown phantom family {bad[0] if bad else '(none)'}"
                               f"; known: {', '.join(ALL_FAMILIES)}")
        from recon.weights import channel_kinds

        self._channels = channel_kinds(input_kind)
        taken = {k for kind in self._channels for k in METHODS[kind].defaults}
        unknown = sorted(set(data.method_options) - taken)
        if unknown:  # an option no channel's method takes (a typo) is an error, never dropped
            raise FlytomoError("data.method_options", f"{input_kind} reconstructions take no option "
                               f"{', '.join(unknown)} (they take {', '.join(sorted(taken)) or 'none'})")
        try:  # a bad value fails here, before any pair is made
            from recon.methods import check_option_values

            check_option_values(dict(data.method_options))
        except FlytomoError as err:
            raise FlytomoError("data.method_options", err.problem) from None
        self._group: tuple[int, list] | None = None

    def _options(self, kind: str) -> dict:
        """The ``data.method_options`` that one channel's method takes."""
        from recon.methods import METHODS

        return {k: v for k, v in self.data.method_options.items() if k in METHODS[kind].defaults}

    def scan_parameters(self, group: int) -> dict:
        """The scan parameters of pair group ``group`` (deterministic)."""
        d = self.data
        rng = np.random.default_rng([self.seed0, int(group)])
        return {
            "n_angles": int(rng.integers(d.n_angles[0], d.n_angles[1] + 1)),
            "i0": float(np.exp(rng.uniform(np.log(d.photons[0]), np.log(d.photons[1])))),
            "blur_angle_deg": float(rng.uniform(*d.blur_angle_deg)),
            "center": (d.image_size - 1) / 2.0 + float(rng.uniform(*d.center_offset_px)),
        }

    def _phantom(self, family: str, seed: int) -> np.ndarray:
        """(n, n) float32 truth: a phantom of diameter ``object_scale`` × n (drawn per pair,
        seeded by ``seed``), centred in the field — a sample smaller than the field of view."""
        from recon.phantoms import make_phantom

        n, (lo, hi) = self.data.image_size, self.data.object_scale
        if lo == hi == 1.0:
            out = np.asarray(make_phantom(family, n, seed), np.float32)
        else:
            frac = float(np.random.default_rng([seed, 7]).uniform(lo, hi))
            m = int(np.clip(round(frac * n), 16, n))
            out = np.zeros((n, n), np.float32)
            a = (n - m) // 2
            out[a:a + m, a:a + m] = make_phantom(family, m, seed)
        if self.data.matrix[1] > 0:
            out += _matrix(out, self.data.matrix, np.random.default_rng([seed, 8]),
                           self.data.matrix_region)
        return out

    def group(self, group: int) -> list:
        """The pairs of group ``group`` (indices group × size … + size − 1): one simulated scan."""
        from recon.geometry import ScanGeometry
        from recon.methods import reconstruct
        from recon.simulate import line_integrals_from_counts, simulate_flyscan

        d, n, g = self.data, self.data.image_size, self.data.slices_per_scan
        p = self.scan_parameters(group)
        indices = range(group * g, (group + 1) * g)
        families = [d.families[i % len(d.families)] for i in indices]
        truth = np.stack([self._phantom(f, self.seed0 + i) for f, i in zip(families, indices)])
        angles = (np.arange(p["n_angles"]) + 0.5) * (180.0 / p["n_angles"])
        scan = simulate_flyscan(truth, angles, p["blur_angle_deg"], p["i0"], n_sub=d.n_sub,
                                seed=self.seed0 + group * g, center=p["center"], device=self.device)
        sino = line_integrals_from_counts(scan)
        geometry = ScanGeometry.create(angles, n, center=p["center"],
                                       blur_angle_deg=p["blur_angle_deg"], image_size=n)
        recs = [reconstruct(sino, geometry, k, self.device, **self._options(k)) for k in self._channels]
        inp = recs[0] if len(recs) == 1 else np.stack(recs, axis=1)
        return [(np.asarray(inp[k], np.float32), truth[k],
                 {"family": f, "seed": self.seed0 + i, "group": group,
                  "object_px": int(np.count_nonzero(truth[k].any(axis=0))), **p})
                for k, (f, i) in enumerate(zip(families, indices))]

    @property
    def group_size(self) -> int:
        """Pairs made together (one simulated scan); :func:`build_pair_set` farms out groups."""
        return self.data.slices_per_scan

    def __getstate__(self) -> dict:  # pickled to worker processes without the cached group
        return {**self.__dict__, "_group": None}

    def __call__(self, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
        group = int(index) // self.data.slices_per_scan
        if self._group is None or self._group[0] != group:
            self._group = (group, self.group(group))
        return self._group[1][int(index) % self.data.slices_per_scan]


def _seed0(split: str, first_seed: int = 0) -> int:
    """The phantom seed of a split's pair 0: the split's first seed (recon.phantoms), plus
    ``first_seed`` for training."""
    offset = first_seed if split == "train" else 0
    try:
        from recon import phantoms

        return int(getattr(phantoms, f"{split.upper()}_SEED0")) + offset
    except (ImportError, AttributeError):
        return _FALLBACK_SEED0[split] + offset


def make_pair_sources(cfg: TrainConfig, device: str | torch.device = "cpu") -> tuple[PairSource, PairSource]:
    """(train source, validation source) for ``cfg.data`` — separate seed ranges
    (recon.phantoms.TRAIN_SEED0 / VALIDATION_SEED0); simulated pairs are made on ``device``."""
    d = cfg.data
    train0, val0 = _seed0("train", d.first_seed), _seed0("validation")
    if d.source == "synthetic":
        return SyntheticPairs(d.image_size, train0), SyntheticPairs(d.image_size, val0)
    return (SimulatedPairs(d, cfg.input_kind, train0, device),
            SimulatedPairs(d, cfg.input_kind, val0, device))


# --------------------------------------------------------------------------- data

def _data_key(cfg: TrainConfig, split: str) -> dict:
    return {"split": split, "input_kind": cfg.input_kind, "seed0": _seed0(split, cfg.data.first_seed),
            "data": cfg.data.model_dump(exclude={"patch"}, mode="json")}


class PairSet:
    """Pairs on disk: ``inputs`` (n, h, w) or (n, C, h, w) and ``truths`` (n, h, w) float32
    (memory-mapped when cached), ``params`` (per-pair dicts), and per-slice normalisation
    scales."""

    def __init__(self, inputs: np.ndarray, truths: np.ndarray, params: list[dict],
                 folder: Path | None = None) -> None:
        self.inputs, self.truths, self.params, self.folder = inputs, truths, params, folder
        self._scales: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def scales(self, normalization: str, chunk: int = 64) -> np.ndarray:
        """(n,) float32: each input slice's scale (:func:`recon.infer.normalize_tensor`),
        computed once and cached beside the pairs."""
        from recon.infer import normalize_slices

        if normalization in self._scales:
            return self._scales[normalization]
        path = self.folder / f"scale-{normalization}.npy" if self.folder else None
        sc = np.load(path) if path is not None and path.is_file() else None
        if sc is not None and len(sc) >= len(self):  # the folder may hold more pairs than asked
            sc = sc[:len(self)]
        else:
            sc = np.concatenate([normalize_slices(self.inputs[i:i + chunk], normalization)[1]
                                 for i in range(0, len(self), chunk)])
            if path is not None:
                tmp = path.with_name(path.stem + ".tmp.npy")
                np.save(tmp, sc)
                os.replace(tmp, path)
        self._scales[normalization] = sc
        return sc

    def normalized(self, normalization: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All pairs normalised, in memory: (inputs, truths, scales) — for validation sets."""
        sc = self.scales(normalization)
        x = np.asarray(self.inputs, np.float32)
        if normalization == "seed":
            x = np.clip(x, 0, None)
        return ((x / sc.reshape(-1, *[1] * (x.ndim - 1))).astype(np.float32),
                (np.asarray(self.truths, np.float32) / sc[:, None, None]).astype(np.float32), sc)


def _worker_start(parent: int) -> None:
    """In each pair worker: one torch thread, and exit when the training process is gone
    (killed, e.g. by Slurm), instead of lingering as an orphan."""
    import threading

    torch.set_num_threads(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _pairs(source: PairSource, start: int, n: int, workers: int):
    """Pairs ``start`` … n−1 of ``source`` in order; with ``workers`` > 1 and a grouped source
    (``group_size`` and ``group(g)``), whole groups are made in that many processes."""
    size = getattr(source, "group_size", None)
    if workers <= 1 or size is None or n - start <= size:
        for i in range(start, n):
            yield source(i)
        return
    import concurrent.futures as cf
    import multiprocessing as mp

    groups = iter(range(start // size, (n - 1) // size + 1))
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                initializer=_worker_start, initargs=(os.getpid(),)) as pool:
        pending = [(g, pool.submit(source.group, g))
                   for g in itertools.islice(groups, 2 * workers)]  # bounded: memory of a few groups
        while pending:
            g, fut = pending.pop(0)
            pending += [(h, pool.submit(source.group, h)) for h in itertools.islice(groups, 1)]
            for k, out in enumerate(fut.result()):
                if start <= g * size + k < n:
                    yield out


def _pair_identity(key: dict | str | None) -> str:
    """What makes two pair sets the same pairs, whatever their length: the key without the
    pair counts (pair i depends on the settings and i only, never on how many are made)."""
    k = json.loads(key) if isinstance(key, str) else dict(key or {})
    if isinstance(k.get("data"), dict):
        k["data"] = {a: b for a, b in k["data"].items() if a not in ("n_train", "n_validation")}
    return json.dumps(k, sort_keys=True, default=str)


def _key_difference(old: str, new: str) -> str:
    """The settings two pair keys differ in, 'data.photons' style (a few)."""
    def flat(d, pre=""):
        out = {}
        for k, v in (d or {}).items():
            out.update(flat(v, f"{pre}{k}.") if isinstance(v, dict) else {f"{pre}{k}": v})
        return out
    a, b = flat(json.loads(_pair_identity(old))), flat(json.loads(new))
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(keys[:4]) + (" ..." if len(keys) > 4 else "") or "the key"


def _read_json(path: Path) -> dict | None:
    try:
        out = json.loads(path.read_text())
        return out if isinstance(out, dict) else None
    except (OSError, ValueError):
        return None


def _resized(path: Path, n: int, keep: int) -> np.ndarray:
    """The .npy array at ``path`` with its first axis made ``n`` long, its first ``keep``
    rows kept (written beside it, then moved over it); memory-mapped r+."""
    from numpy.lib.format import open_memmap

    old = np.load(path, mmap_mode="r")
    tmp = path.with_name(path.stem + ".resize.npy")
    new = open_memmap(tmp, "w+", old.dtype, (n, *old.shape[1:]))
    for i in range(0, keep, 16):
        new[i:min(keep, i + 16)] = old[i:min(keep, i + 16)]
    new.flush()
    del new, old
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r+")


def build_pair_set(source: PairSource, n: int, folder: Path | None, key: dict | None = None,
                   *, progress: bool = False, desc: str = "pairs", workers: int = 1,
                   deadline: float | None = None) -> PairSet | int:
    """Generate pairs 0..n−1 from ``source`` → :class:`PairSet`.

    With ``folder``, the pairs are cached there (``inputs.npy``, ``truths.npy``,
    ``meta.json`` with ``key``) and read back memory-mapped by a later call with the same
    key; another key regenerates. The count is not part of the key: a later call for fewer
    pairs reads the first ``n``, one for more keeps those made and simulates only the rest.
    Generation writes into ``FOLDER.partial`` pair by pair and continues where a killed one
    stopped; the folder gets its final name only when complete. Memory use stays that of a
    few pairs, whatever ``n`` (of a few groups with ``workers`` > 1: processes that simulate
    the groups of a grouped source in parallel, one torch thread each; the pairs are the
    same up to the float rounding of the thread count). Past ``deadline`` (``time.perf_counter()``
    seconds; only with ``folder``) it keeps the pairs made and returns how many there are.
    """
    from numpy.lib.format import open_memmap
    from tqdm import tqdm

    key_json = json.dumps(key or {}, sort_keys=True, default=str)
    if folder is None:
        outs = list(tqdm(_pairs(source, 0, n, workers), total=n, desc=desc, disable=not progress,
                         leave=False))
        for i, o in enumerate(outs):
            _check_pair(i, o)
        return PairSet(np.stack([np.asarray(o[0], np.float32) for o in outs]),
                       np.stack([np.asarray(o[1], np.float32) for o in outs]),
                       [o[2] if len(o) > 2 else {} for o in outs])
    identity = _pair_identity(key_json)
    meta = _read_json(folder / "meta.json")
    if meta is not None and isinstance(meta.get("key"), str) and _pair_identity(meta["key"]) != identity:
        warnings.warn(f"{folder}: holds {meta.get('n', '?')} pairs made with other settings ("
                      f"{_key_difference(meta['key'], identity)}): they are replaced; give this run a "
                      "data_dir of its own to keep them", UserWarning, stacklevel=2)
    made = 0  # pairs of this identity in the complete folder
    if meta is not None and isinstance(meta.get("key"), str) and _pair_identity(meta["key"]) == identity:
        made = int(meta.get("n", 0))
        if made >= n:
            try:
                xs = np.load(folder / "inputs.npy", mmap_mode="r")
                ys = np.load(folder / "truths.npy", mmap_mode="r")
                if xs.shape[0] == ys.shape[0] == made and len(meta["params"]) == made:
                    return PairSet(xs[:n], ys[:n], meta["params"][:n], folder)
            except (OSError, ValueError, KeyError):  # unreadable cache: regenerate it
                pass
            made = 0
    import shutil

    partial = folder.with_name(folder.name + ".partial")
    state_path = partial / "progress.json"
    state = _read_json(state_path)
    done, params = 0, []
    xs = ys = None
    if state is not None and _pair_identity(state.get("key", "{}")) == identity:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            done = int(state["done"])
            params = list(state["params"])[:done]
            if done < made:  # the complete folder holds more than an older partial run
                done, params = 0, []
            elif int(state["n"]) != n:  # a partial run for another count: keep what it made
                done = min(done, n)
                params = params[:done]
                xs = _resized(partial / "inputs.npy", n, done)
                ys = _resized(partial / "truths.npy", n, done)
    if done == 0 and made > 0:  # extend the complete folder: its pairs first
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        old_x = np.load(folder / "inputs.npy", mmap_mode="r")
        old_y = np.load(folder / "truths.npy", mmap_mode="r")
        xs = open_memmap(partial / "inputs.npy", "w+", np.float32, (n, *old_x.shape[1:]))
        ys = open_memmap(partial / "truths.npy", "w+", np.float32, (n, *old_y.shape[1:]))
        for i in range(0, made, 16):
            xs[i:min(made, i + 16)] = old_x[i:min(made, i + 16)]
            ys[i:min(made, i + 16)] = old_y[i:min(made, i + 16)]
        del old_x, old_y
        done, params = made, list(meta["params"])[:made]  # type: ignore[index]
    if done == 0:
        shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True, exist_ok=True)
    stream = _pairs(source, done, n, workers)
    first = next(stream) if done == 0 else None
    if first is not None:
        _check_pair(0, first)
        shape = np.asarray(first[0]).shape
        xs = open_memmap(partial / "inputs.npy", "w+", np.float32, (n, *shape))
        ys = open_memmap(partial / "truths.npy", "w+", np.float32, (n, *shape[-2:]))
    elif xs is None:
        xs = np.load(partial / "inputs.npy", mmap_mode="r+")
        ys = np.load(partial / "truths.npy", mmap_mode="r+")

    def save_progress(count: int) -> None:
        xs.flush()
        ys.flush()
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key_json, "n": n, "done": count, "params": params},
                                  default=str))
        os.replace(tmp, state_path)

    if done > 0:
        save_progress(done)  # a kill from here on resumes at done, not at 0
    bar = tqdm(total=n, initial=done, desc=desc, disable=not progress, leave=False)
    for i in range(done, n):
        out = first if (i == 0 and first is not None) else next(stream)
        _check_pair(i, out, xs.shape[1:])
        xs[i], ys[i] = out[0], out[1]
        params.append(out[2] if len(out) > 2 else {})
        bar.update(1)
        past = deadline is not None and i + 1 < n and time.perf_counter() >= deadline  # a batch job's slot ends
        if (i + 1) % 16 == 0 or i + 1 == n or past:  # progress survives a kill
            save_progress(i + 1)
        if past:
            bar.close()
            return i + 1
    bar.close()
    del xs, ys
    (partial / "meta.json").write_text(json.dumps({"key": key_json, "n": n, "params": params},
                                                  default=str))
    state_path.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    return build_pair_set(source, n, folder, key, progress=False, desc=desc)


def _check_pair(i: int, out, shape=None) -> None:
    x, y = np.asarray(out[0]), np.asarray(out[1])
    if (x.shape[-2:] != y.shape or x.ndim not in (2, 3) or y.ndim != 2
            or (shape is not None and x.shape != tuple(shape))):
        raise FlytomoError("data", f"pair {i}: input {x.shape} and truth {y.shape} must be two "
                           f"slices of one shape (the input may have channels first)"
                           f"{'' if shape is None else f', input {tuple(shape)}'}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise FlytomoError("data", f"pair {i} contains NaN or infinite values")


def sample_batch(inputs: np.ndarray, truths: np.ndarray, batch: int, patch: int, seed: int,
                 step: int, scales: np.ndarray | None = None,
                 normalization: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """Random patches of (input, truth) with random rot90/flip, a deterministic function of
    (seed, step): input (batch, C, patch, patch) from inputs (n, h, w) (C = 1) or
    (n, C, h, w), truth (batch, 1, patch, patch). With ``scales`` (n,), both are divided by
    their slice's scale (and the input clipped at 0 for ``normalization="seed"``), as
    :func:`recon.infer.normalize_tensor` does to whole slices."""
    rng = np.random.default_rng([int(seed), 7, int(step)])
    if inputs.ndim == 3:
        inputs = inputs[:, None]
    n, c, h, w = inputs.shape
    idx = rng.integers(0, n, batch)
    ys = rng.integers(0, h - patch + 1, batch)
    xs = rng.integers(0, w - patch + 1, batch)
    rots = rng.integers(0, 4, batch)
    flips = rng.integers(0, 2, batch)
    xb = np.empty((batch, c, patch, patch), np.float32)
    yb = np.empty((batch, 1, patch, patch), np.float32)
    for b in range(batch):
        a = np.asarray(inputs[idx[b], :, ys[b]:ys[b] + patch, xs[b]:xs[b] + patch], np.float32)
        t = np.asarray(truths[idx[b], ys[b]:ys[b] + patch, xs[b]:xs[b] + patch], np.float32)
        if scales is not None:
            if normalization == "seed":
                a = np.clip(a, 0, None)
            a, t = a / scales[idx[b]], t / scales[idx[b]]
        a, t = np.rot90(a, rots[b], axes=(1, 2)), np.rot90(t, rots[b])
        if flips[b]:
            a, t = a[..., ::-1], t[:, ::-1]
        xb[b], yb[b, 0] = a, t
    return xb, yb


def lr_at(step: int, opt: OptimConfig) -> float:
    """Learning rate for (0-based) ``step``: linear warm-up, then constant or cosine."""
    if opt.warmup_steps and step < opt.warmup_steps:
        return opt.lr * (step + 1) / opt.warmup_steps
    if opt.lr_schedule == "constant":
        return opt.lr
    span = max(1, opt.steps - opt.warmup_steps)
    t = min(1.0, (step - opt.warmup_steps) / span)
    return opt.lr * (opt.lr_final + (1 - opt.lr_final) * 0.5 * (1 + math.cos(math.pi * t)))


# --------------------------------------------------------------------------- training

class TrainResult(BaseModel):
    """What a call to :func:`train` did."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    status: Literal["finished", "stopped"]
    step: int
    run_dir: Path
    weights: Path | None = None
    validation: dict[str, Any] = {}
    wall_time_s: float = 0.0
    note: str = ""  # what a stop kept besides the checkpoint (pairs made before the time limit)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from recon.device import torch_device

    return torch_device(name, "device")


# what a resume may change: the machine and bookkeeping (device and amp change rounding only)
_RESUME_FREE = {"run_dir", "data_dir", "device", "threads", "workers"}
_RESUME_FREE_TRAINING = {"checkpoint_every", "validate_every", "amp", "cpu_bf16"}


def _result_config(cfg: TrainConfig) -> dict:
    d = cfg.model_dump(mode="json", exclude=_RESUME_FREE)
    d["training"] = {k: v for k, v in d["training"].items() if k not in _RESUME_FREE_TRAINING}
    return d


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += _diff_keys(va, vb, f"{prefix}{k}.")
        elif va != vb:
            keys.append(prefix + k)
    return keys


def _save_checkpoint(path: Path, model, opt, scaler, step: int, wall: float, cfg_json: str,
                     segments: list[dict]) -> None:
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": int(step),
            "wall_time_s": float(wall), "config": cfg_json, "segments": segments,
            "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {}}
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    except (RuntimeError, OSError) as err:  # torch raises RuntimeError for a file it cannot open
        raise FlytomoError(path, f"cannot write the checkpoint ({str(err).splitlines()[0]}): is the "
                                 "run folder writable, and is there space?") from None


def _load_checkpoint(path: Path) -> dict:
    try:
        ckpt = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same error here
        raise FlytomoError(path, f"checkpoint not readable ({type(err).__name__}); remove it or "
                           "start with --fresh") from None
    if not isinstance(ckpt, dict) or not {"model", "optimizer", "step", "config"} <= set(ckpt):
        raise FlytomoError(path, "not a flytomo training checkpoint")
    return ckpt


def _load_init(cfg: TrainConfig, model: torch.nn.Module) -> dict:
    """Copy the weights of ``cfg.init`` (a flytomo model of the same architecture and
    normalization) into ``model``; returns what the card records of it: name, weights file
    and sha256, and ``steps``, all the training steps behind it (a fine-tuned init's own
    ``init.steps`` included).

    The init corrects this run's input kind, or this run's primary channel alone: a
    one-channel "mlem-flyscan" model starts a "mlem-flyscan+fbp" run with the weights of
    its new channels in the first convolution set to zero, so the widened network computes
    exactly what the init did until training gives the new channel a use. Likewise an init
    with fewer RRDB blocks (all else equal) starts a deeper run: the added blocks start as the
    identity (:meth:`recon.rrdb.RRDBNet.load_shallower`)."""
    from recon.weights import channel_kinds, load_model

    loaded = load_model(cfg.init)
    kinds = channel_kinds(cfg.input_kind)
    widen = loaded.input_kind != cfg.input_kind
    if widen and (len(kinds) == 1 or loaded.input_kind != kinds[0]):
        raise FlytomoError(cfg.init, f"init model corrects {loaded.input_kind!r} reconstructions; "
                           f"this run trains on {cfg.input_kind!r}")
    if loaded.normalization != cfg.normalization:
        raise FlytomoError(cfg.init, f"init model uses {loaded.normalization!r} normalization, "
                           f"this run {cfg.normalization!r}")
    state = loaded.model.state_dict()
    small, big = dict(loaded.model.config), dict(getattr(model, "config", {}))
    nb_init, nb_run = small.pop("nb", None), big.pop("nb", None)
    deepen = small == big and nb_init is not None and nb_run is not None and nb_run > nb_init
    if deepen:  # more RRDB blocks than the init: the added ones start as the identity
        model.load_shallower(state, nb_init)
        state = model.state_dict()
    if widen:
        own = model.state_dict()
        for key, value in state.items():
            if key.startswith("conv_first") and key.endswith("weight") and key in own \
                    and own[key].shape[1] > value.shape[1]:
                wide = torch.zeros_like(own[key])
                wide[:, :value.shape[1]] = value
                state[key] = wide
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise FlytomoError(cfg.init, "init model's architecture differs from this run's "
                           "'model' section") from None
    prov = loaded.provenance()
    behind = int((loaded.card.get("init") or {}).get("steps") or 0)  # a fine-tuned init's own start
    return {"name": prov["name"], "weights": Path(cfg.init).name,
            "weights_sha256": prov["weights_sha256"], "steps": int(prov["steps"] or 0) + behind,
            **({"widened_from": loaded.input_kind} if widen else {}),
            **({"deepened_from_nb": int(nb_init)} if deepen else {})}


def crack_weights(truth: torch.Tensor, crack_weight: float, width_px: int = 5) -> torch.Tensor:
    """(b, 1, h, w) loss weights ≥ 1 from a truth batch of the same shape: 1 + crack_weight ×
    the relative black top-hat of the truth, (closing − truth) / closing, over a
    ``width_px`` square — near 1 inside a crack or pore narrower than ``width_px`` cut into
    solid, 0 on solid, on open background and along the sample's convex outline."""
    k, pad = int(width_px), int(width_px) // 2
    closed = -F.max_pool2d(-F.max_pool2d(truth, k, 1, pad), k, 1, pad)  # dilation then erosion
    floor = 0.05 * closed.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    gap = ((closed - truth).clamp_min(0) / torch.maximum(closed, floor)).clamp(0, 1)
    return 1.0 + float(crack_weight) * gap


def ssim_index(out: torch.Tensor, truth: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Mean structural similarity of ``out`` against ``truth``, both (b, 1, h, w) in the
    network's units (the input's 95th percentile is 1, so the data range is taken as 1):
    :func:`recon.metrics.ssim`'s definition (skimage: a uniform ``window``² window, sample
    covariances, K1 0.01, K2 0.03, the border of half a window left out), differentiable."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    norm = window * window / (window * window - 1.0)
    mean = lambda x: F.avg_pool2d(x, window, 1)  # noqa: E731 - the local mean, four times
    mu_x, mu_y = mean(out), mean(truth)
    var_x = norm * (mean(out * out) - mu_x * mu_x)
    var_y = norm * (mean(truth * truth) - mu_y * mu_y)
    cov = norm * (mean(out * truth) - mu_x * mu_y)
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return s.mean()


def pixel_loss(kind: str, crack_weight: float = 0.0, ssim_weight: float = 0.0):
    """``loss(out, truth)``, both (b, 1, h, w): mean L1 (``"l1"``) or squared (``"mse"``) error,
    weighted by :func:`crack_weights` when ``crack_weight`` > 0; with ``ssim_weight`` w > 0,
    (1 − w) times that plus w·(1 − :func:`ssim_index`)."""
    power = 1 if kind == "l1" else 2

    def pixel(out: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        err = (out - truth).abs() ** power
        if crack_weight <= 0:
            return err.mean()
        w = crack_weights(truth, crack_weight)
        return (w * err).sum() / w.sum()

    if ssim_weight <= 0:
        return pixel

    def loss(out: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        return (1 - ssim_weight) * pixel(out, truth) + ssim_weight * (1 - ssim_index(out, truth))

    return loss


@torch.no_grad()
def _validate(model, xv, yv, scale, truths, loss_fn, device, batch) -> dict:
    from recon import metrics

    was_training = model.training
    model.eval()
    outs = []
    for i in range(0, xv.shape[0], batch):
        xb = torch.from_numpy(xv[i:i + batch, None] if xv.ndim == 3 else xv[i:i + batch]).to(device)
        outs.append(model(xb).float().cpu())
    out = torch.cat(outs)[:, 0]
    loss = float(loss_fn(out[:, None], torch.from_numpy(yv)[:, None]))
    phys = out.numpy() * scale[:, None, None]
    psnrs = [metrics.psnr(p, t) for p, t in zip(phys, truths)]
    ssims = [metrics.ssim(p, t) for p, t in zip(phys, truths)]
    if was_training:
        model.train()
    return {"val_loss": loss, "val_psnr": float(np.mean(psnrs)), "val_ssim": float(np.mean(ssims))}


def _input_metrics(inputs, truths) -> dict:
    """PSNR / SSIM of the (primary channel of the) inputs against the truths."""
    from recon import metrics

    inputs = inputs if inputs.ndim == 3 else inputs[:, 0]
    return {"input_psnr": float(np.mean([metrics.psnr(a, t) for a, t in zip(inputs, truths)])),
            "input_ssim": float(np.mean([metrics.ssim(a, t) for a, t in zip(inputs, truths)]))}


class _StopFlag:
    """Set by SIGTERM/SIGINT while training: finish the step, checkpoint, stop."""

    def __init__(self) -> None:
        self.set = False
        self._old = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.set = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    sources: tuple[PairSource, PairSource] | None = None,
    progress: bool = True,
    fresh: bool = False,
    stop_at_step: int | None = None,
    time_limit_s: float | None = None,
) -> TrainResult:
    """Train (or resume) the run in ``run_dir`` to ``cfg.training.steps`` steps.

    Parameters
    ----------
    cfg : validated :class:`TrainConfig`.
    run_dir : the run's folder: data cache, ``checkpoint.pt``, ``metrics.jsonl``,
        ``config.json`` and finally ``NAME.safetensors`` + ``NAME.json``.
    sources : (train, validation) pair sources; default :func:`make_pair_sources`.
    progress : tqdm progress bars.
    fresh : ignore (and replace) an existing checkpoint.
    stop_at_step : checkpoint and stop once this step is reached (a later call resumes).
    time_limit_s : checkpoint and stop after this much wall time in this call, counted from
        its start (the pair simulation included: a batch job's slot is wall time).

    Returns a :class:`TrainResult`; ``status`` "stopped" when it stopped early (also on
    SIGTERM/SIGINT), "finished" after the final export.
    """
    deadline = None if time_limit_s is None else time.perf_counter() + float(time_limit_s)
    threads_before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, Path(run_dir), sources=sources, progress=progress, fresh=fresh,
                      stop_at_step=stop_at_step, deadline=deadline)
    finally:
        torch.set_num_threads(threads_before)


def _train(cfg: TrainConfig, run_dir: Path, *, sources, progress, fresh, stop_at_step,
           deadline: float | None) -> TrainResult:
    from tqdm import tqdm

    from recon.rrdb import build_model
    from recon.weights import save_model

    opt_cfg = cfg.training
    device = _resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(model_config(cfg)).to(device)
    init = _load_init(cfg, model) if cfg.init else None  # a bad init fails before anything is written
    # so do bad data settings (an unknown family, method options the first stage does not take)
    train_src, val_src = sources if sources is not None else make_pair_sources(cfg, device)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_json = json.dumps(_result_config(cfg), sort_keys=True)
    ckpt_path = run_dir / "checkpoint.pt"
    ckpt = None
    if ckpt_path.is_file() and not fresh:  # refuse a mismatched resume before any work
        ckpt = _load_checkpoint(ckpt_path)
        if ckpt["config"] != cfg_json:
            changed = _diff_keys(json.loads(ckpt["config"]), json.loads(cfg_json))
            raise FlytomoError(ckpt_path, "checkpoint was made with another config (changed: "
                               f"{', '.join(changed[:5])}); use --fresh or another run_dir"
                               + ("; to train its finished model further, give a new run_dir with init: its "
                                  f"{cfg.name}.safetensors" if changed == ["training.steps"] else ""))
    (run_dir / "config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n")

    # data
    data_dir = Path(cfg.data_dir) if cfg.data_dir else run_dir / "data"
    sets = []
    for src, n, part, desc in ((train_src, cfg.data.n_train, "train", "training pairs"),
                               (val_src, cfg.data.n_validation, "validation", "validation pairs")):
        made = build_pair_set(src, n, data_dir / part, _data_key(cfg, part), progress=progress, desc=desc,
                              workers=cfg.workers, deadline=deadline)
        if isinstance(made, int):  # the time limit came while the pairs were simulated (blind probe AH)
            return TrainResult(status="stopped", step=int(ckpt["step"]) if ckpt is not None else 0,
                               run_dir=run_dir, note=f"{made} of {n} {part} pairs made, kept in {data_dir / part}")
        sets.append(made)
    train_set, val_set = sets
    if min(train_set.inputs.shape[-2:]) < cfg.data.patch:
        raise FlytomoError("data.patch", f"patch {cfg.data.patch} larger than the pairs "
                           f"{train_set.inputs.shape[-2:]}")
    t_scale = train_set.scales(cfg.normalization)
    xv, yv, v_scale = val_set.normalized(cfg.normalization)
    xv_raw, yv_raw = np.asarray(val_set.inputs), np.asarray(val_set.truths)

    # optimizer
    opt = torch.optim.Adam(model.parameters(), lr=opt_cfg.lr, betas=(0.9, 0.99))
    use_amp = opt_cfg.amp and device.type == "cuda"
    cpu_bf16 = cpu_bf16_or_float32(opt_cfg.cpu_bf16 and device.type == "cpu", "training.cpu_bf16")
    mixed = use_amp or cpu_bf16  # autocast on: CUDA amp or CPU bfloat16
    amp_dtype = (torch.bfloat16 if cpu_bf16 or (use_amp and torch.cuda.is_bf16_supported()) else torch.float16)
    layout = torch.channels_last if cpu_bf16 else torch.contiguous_format
    model.to(memory_format=layout)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    loss_fn = pixel_loss(opt_cfg.loss, opt_cfg.crack_weight, opt_cfg.ssim_weight)

    log_path = run_dir / "metrics.jsonl"
    step, wall_before = 0, 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(ckpt["scaler"])
        step, wall_before = int(ckpt["step"]), float(ckpt["wall_time_s"])
        print(f"flytomo train: resuming {run_dir / 'checkpoint.pt'} at step {step} of {opt_cfg.steps} "
              "(--fresh begins again)", file=sys.stderr, flush=True)  # blind probe AC: a resume said nothing
    # each call's steps and the machine settings a resume may change (they change the last bits)
    segments = [dict(s) for s in ckpt.get("segments", [])] if ckpt is not None else []
    segments.append({"from_step": step, "to_step": step, "device": str(device), "threads": torch.get_num_threads(),
                     "precision": str(amp_dtype).replace("torch.", "") if mixed else "float32"})
    # the log keeps only rows up to the step we (re)start from
    rows = []
    if log_path.is_file() and step > 0:
        for line in log_path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                r = json.loads(line)
                if r.get("step", 0) <= step:
                    rows.append(line)
    log_path.write_text("".join(r + "\n" for r in rows))
    for stale in run_dir.glob(f"{cfg.name}.*"):  # an export is only there once finished
        if stale.suffix in (".safetensors", ".json"):
            stale.unlink()

    def log(row: dict) -> None:
        with open(log_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    input_metrics = _input_metrics(xv_raw, yv_raw)
    t0 = time.perf_counter()
    model.train()
    window: list[float] = []
    last_val: dict = {}
    status = "finished"
    bar = tqdm(total=opt_cfg.steps, initial=step, desc=cfg.name, disable=not progress,
               dynamic_ncols=True)
    if step == 0:  # the starting point of the validation curve
        log({"step": 0, **_validate(model, xv, yv, v_scale, yv_raw, loss_fn, device, opt_cfg.batch),
             **input_metrics, "lr": lr_at(0, opt_cfg), "wall_time_s": round(wall_before, 3)})
    with _StopFlag() as stop:
        while step < opt_cfg.steps:
            xb, yb = sample_batch(train_set.inputs, train_set.truths, opt_cfg.batch,
                                  cfg.data.patch, cfg.seed, step, t_scale, cfg.normalization)
            xb = torch.from_numpy(xb).to(device, non_blocking=True).contiguous(memory_format=layout)
            yb = torch.from_numpy(yb).to(device, non_blocking=True)
            lr = lr_at(step, opt_cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=mixed):
                out = model(xb)
            loss = loss_fn(out.float(), yb)  # the loss (and its SSIM term's filters) in float32
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            step += 1
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise FlytomoError(run_dir, f"training diverged at step {step} (loss {lv}); "
                                   "lower training.lr")
            window.append(lv)
            bar.update(1)
            bar.set_postfix(loss=f"{lv:.4g}", refresh=False)
            wall = wall_before + time.perf_counter() - t0
            if step % opt_cfg.validate_every == 0 or step == opt_cfg.steps:
                last_val = _validate(model, xv, yv, v_scale, yv_raw, loss_fn, device, opt_cfg.batch)
                log({"step": step, "train_loss": float(np.mean(window)), **last_val, "lr": lr,
                     "wall_time_s": round(wall, 3)})
                window = []
            stopping = (stop.set or (stop_at_step is not None and step >= stop_at_step)
                        or (deadline is not None and time.perf_counter() >= deadline))
            if step % opt_cfg.checkpoint_every == 0 or step == opt_cfg.steps or stopping:
                segments[-1]["to_step"] = step
                _save_checkpoint(ckpt_path, model, opt, scaler, step, wall, cfg_json, segments)
            if stopping and step < opt_cfg.steps:
                status = "stopped"
                break
    bar.close()
    wall = wall_before + time.perf_counter() - t0
    if status == "stopped":
        return TrainResult(status="stopped", step=step, run_dir=run_dir, wall_time_s=wall)

    if not last_val:  # resumed at the last step: nothing was validated in this call
        last_val = _validate(model, xv, yv, v_scale, yv_raw, loss_fn, device, opt_cfg.batch)
    card = {
        "name": cfg.name,
        "input_kind": cfg.input_kind,
        "input_options": cfg.data.method_options,
        "normalization": cfg.normalization,
        # amp as it ran (CUDA only), not as configured (blind probe AC: "amp: true" on a CPU run)
        "training": {**cfg.training.model_dump(mode="json"), "amp": bool(use_amp), "seed": cfg.seed,
                     "optimizer": "Adam(betas=(0.9, 0.99))", "device": str(device),
                     "mixed_precision": str(amp_dtype).replace("torch.", "") if mixed else None},
        "config_digest": config_digest(cfg),  # of every setting that changes the weights
        "command": " ".join(sys.argv) if sys.argv else "",
        "data": {**cfg.data.model_dump(mode="json"), "train_seed0": _seed0("train", cfg.data.first_seed),
                 "validation_seed0": _seed0("validation")},
        "init": init,
        "steps": step,
        "segments": [s for s in segments if s["to_step"] > s["from_step"]],
        "wall_time_s": round(wall, 1),
        "validation": {**last_val, **input_metrics, "n_images": int(xv.shape[0]),
                       "metric_definition": "recon.metrics (inside the disk, range = truth max-min)"},
    }
    weights = save_model(run_dir, model.float().cpu(), card)
    return TrainResult(status="finished", step=step, run_dir=run_dir, weights=weights,
                       validation=card["validation"], wall_time_s=wall)


def config_digest(cfg: TrainConfig) -> str:
    """Short hash of everything in ``cfg`` that changes the trained weights."""
    return hashlib.sha256(json.dumps(_result_config(cfg), sort_keys=True).encode()).hexdigest()[:12]
