"""Trained correction networks on disk: safetensors weights with a JSON model card beside.

A model is two files, ``NAME.safetensors`` (tensors only, no pickle) and ``NAME.json``
(its model card). The card says what the weights are and how they were made:

``name``, ``format`` ("flytomo-model-card/1"), ``architecture`` (the resolved model config
for :func:`recon.rrdb.build_model`), ``input_kind`` (the reconstruction the network
corrects: "fbp", "mlem" or "mlem-flyscan"), ``input_options`` (that method's options),
``normalization`` (see :mod:`recon.infer`), ``training`` (the training config), ``data``
(how the pairs were made), ``steps``, ``wall_time_s``, ``hardware``, ``validation``
(metrics on the validation images), ``flytomo_version``, ``created``, ``weights_sha256``.

Shipped models live in this folder as ``rrdb-<input_kind>.safetensors`` (+ ``.json``);
``load_model(None)`` picks the one for the requested input kind. The seed authors'
checkpoint (a pickled PyTorch state dict) is loaded with ``load_model("seed:PATH")``
through ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from recon.errors import FlytomoError

__all__ = [
    "CARD_FORMAT",
    "DEFAULT_BLEND",
    "DEFAULT_INPUT_KIND",
    "INPUT_KINDS",
    "WEIGHTS_DIR",
    "LoadedModel",
    "channel_kinds",
    "ModelDomainWarning",
    "default_weights_path",
    "default_model_spec",
    "fits_trained_size",
    "load_model",
    "load_seed_model",
    "save_model",
    "seed_checkpoint_path",
    "trained_object_px",
]

INPUT_KINDS = ("fbp", "mlem", "mlem-flyscan", "mlem-flyscan+fbp")
#: the input kind of the shipped model used when none is named (the best one measured:
#: docs/benchmarks.md, RRDB section)
DEFAULT_INPUT_KIND = "mlem-flyscan"
CARD_FORMAT = "flytomo-model-card/1"
#: photons per pixel this many times outside a card's training range get a warning (the
#: quality falls with the log of the dose: twice the range is not yet far)
PHOTON_SLACK = 2.0
WEIGHTS_DIR = Path(__file__).resolve().parent
#: the second network the default rrdb method averages in (recon.methods.blend_spec), and the
#: FBP network for slices at least as large as its smallest training sample
#: (:func:`default_model_spec`): FBP input, trained at 512² over the default model's ranges
#: (jobs/train-fbp-512c.yaml); ``rrdb-fbp``, the 128-px model, serves smaller FBP slices
DEFAULT_BLEND = WEIGHTS_DIR / "rrdb-fbp-blend.safetensors"


def card_of(weights: str | Path) -> dict:
    """The model card beside ``weights`` (``NAME.json`` for ``NAME.safetensors``), unchecked;
    OSError or ValueError where it is missing or not JSON."""
    return json.loads(Path(weights).with_suffix(".json").read_text())


def fits_trained_size(weights: Path, image_size: int | None) -> bool:
    """Whether slices of ``image_size`` px (None: not known, taken as fitting) are no smaller
    than the smallest sample the model ``weights`` (its card beside it) was trained on; a
    missing or bad card counts as fitting (loading the model names the problem)."""
    if image_size is None:
        return True
    try:
        px = trained_object_px(card_of(weights))
    except (OSError, ValueError):
        return True
    return px is None or image_size >= px[0]


def shipped_input_kinds() -> list[str]:
    """The input kinds a shipped network of this installation takes."""
    return [k for k in INPUT_KINDS if default_weights_path(k).is_file()]


def default_model_spec(input_kind: str | None, image_size: int | None) -> str | None:
    """The shipped network for ``input_kind`` reconstructions of ``image_size`` px slices, as a
    spec for :func:`load_model`; None: its per-kind default (``rrdb-<kind>``). FBP slices
    of known size that fit :data:`DEFAULT_BLEND` get that network (512², 384², the re-simulated
    real particle and images made elsewhere: +0.8 to +2.6 dB over the 128-px ``rrdb-fbp``;
    docs/benchmarks.md); smaller or unknown ones keep ``rrdb-fbp``. The same rule as the
    ``rrdb`` method's second network (:func:`recon.methods.blend_spec`): a missing shipped file
    is not skipped here but named by :func:`load_model`."""
    if input_kind == "fbp" and image_size is not None and fits_trained_size(DEFAULT_BLEND, image_size):
        return str(DEFAULT_BLEND)
    return None


def channel_kinds(input_kind: str) -> tuple[str, ...]:
    """The first-stage reconstructions an input kind stacks as network channels, in order:
    ``"mlem-flyscan+fbp"`` → ("mlem-flyscan", "fbp"); a plain kind → (kind,). The first is
    the primary channel: the one normalised by and added back by the global residual."""
    return tuple(input_kind.split("+"))


def _check_channels(card: dict, path) -> None:
    want = len(channel_kinds(str(card.get("input_kind"))))
    got = int(card.get("architecture", {}).get("in_nc", 1))
    if got != want:
        raise FlytomoError(path, f"model card says input {card.get('input_kind')!r} ({want} "
                           f"channel{'s' if want > 1 else ''}) but the network takes {got}")


def trained_object_px(card: dict) -> tuple[float, float] | None:
    """(smallest, largest) sample diameter in pixels of a model's training slices (its card's
    ``data.image_size`` × ``data.object_scale``); None when the card does not say."""
    d = card.get("data") or {}
    if "image_size" not in d:
        return None
    lo, hi = d.get("object_scale") or (1.0, 1.0)
    return float(d["image_size"]) * lo, float(d["image_size"]) * hi


class ModelDomainWarning(UserWarning):
    """Data outside what a network was trained on (see :meth:`LoadedModel.check_slice_size`)."""


@dataclass
class LoadedModel:
    """A network ready to apply, with the card that says how.

    ``model`` is in eval mode on ``device``; ``card`` is the model card (dict); ``path`` the
    weights file it came from.
    """

    model: nn.Module
    card: dict
    path: Path
    device: str = "cpu"
    extra: dict = field(default_factory=dict)

    @property
    def input_kind(self) -> str:
        return self.card["input_kind"]

    @property
    def normalization(self) -> str:
        return self.card["normalization"]

    def resolve_zoom(self, zoom: float | str, image_size: int | None = None) -> float | str:
        """``zoom`` for this network on slices of ``image_size`` px (None: not known): ``"auto"``
        becomes the rule for a flytomo network's primary input kind (``"auto:mlem-flyscan"``,
        ``"auto:fbp"``: :func:`recon.infer.auto_zoom`; docs/benchmarks.md "Zoom before the
        network"), and 1 for other networks (the seed authors', as they ran it) and where zooming
        would take the slices past the largest sample the network was trained on (the 128-px FBP
        network at 128-160 px lost 1.05 dB zoomed on images made elsewhere); a number is itself."""
        from recon.infer import AUTO_ZOOM, AUTO_ZOOM_RULES

        if zoom != "auto":
            return zoom
        mine = isinstance(self.card.get("data"), dict) and self.card["data"].get("source") is not None
        rule = f"auto:{channel_kinds(self.input_kind)[0]}"
        px = self.trained_object_px()
        if image_size is not None and px is not None and image_size * AUTO_ZOOM > px[1]:
            return 1.0
        return rule if mine and rule in AUTO_ZOOM_RULES else 1.0

    @property
    def label(self) -> str:
        """Name and training steps for tables, e.g. ``"rrdb-mlem-flyscan (5000+4000 steps)"``
        for a model fine-tuned for 4000 steps from a 5000-step one."""
        c, init = self.card, self.card.get("init") or {}
        steps = f"{init['steps']}+{c['steps']}" if init.get("steps") else c.get("steps")
        return f"{c.get('name', self.path.stem)}" + (f" ({steps} steps)" if steps else "")

    def trained_object_px(self) -> tuple[float, float] | None:
        """(smallest, largest) sample diameter in pixels of the training slices: see
        :func:`trained_object_px`."""
        return trained_object_px(self.card)

    def check_slice_size(self, image_size: int, zooms: Sequence[float] = ()) -> None:
        """Warn (:class:`ModelDomainWarning`) when slices of ``image_size`` pixels, enlarged by the
        smallest of ``zooms`` (the zoom each slice went through the network at; none: 1), are
        smaller than the smallest sample the network was trained on: its features are then a few
        pixels wide, and the network (tuned to larger ones) can lose PSNR against its input
        (docs/benchmarks.md: 64² slices, −4.5 dB)."""
        px = self.trained_object_px()
        zoom = min(zooms, default=1.0)
        seen = image_size * zoom
        if px is not None and seen < px[0]:
            span = f"{px[0]:.0f}" if px[0] == px[1] else f"{px[0]:.0f}-{px[1]:.0f}"
            at = f"{image_size} px wide" + (f" ({seen:.0f} px at zoom {zoom:g})" if zoom != 1 else "")
            warnings.warn(f"{self.path.name}: trained on samples {span} px across; "
                          f"these slices are only {at}, so any sample in them is smaller: the network may make them worse than its "
                          f"{channel_kinds(self.input_kind)[0]} input - compare its output with that input",
                          ModelDomainWarning, stacklevel=2)

    def check_scan(self, n_angles_per_half_turn: float, blur_angle_deg: float) -> None:
        """Warn (:class:`ModelDomainWarning`) where a scan's projections per half turn or blur
        angle (degrees) lie outside the ranges the card says the network was trained on (10 %
        slack): there it was never shown the streaks or the smear it must undo."""
        data = self.card.get("data") or {}
        outside = []
        for what, value, key, unit in (("projections per half turn", n_angles_per_half_turn, "n_angles", ""),
                                       ("blur angle", blur_angle_deg, "blur_angle_deg", "°")):
            span = data.get(key)
            if (isinstance(span, (list, tuple)) and len(span) == 2
                    and not 0.9 * float(span[0]) <= value <= 1.1 * float(span[1])):
                outside.append(f"{what} {value:.3g}{unit} (trained on {float(span[0]):g}-{float(span[1]):g}{unit})")
        if outside:
            warnings.warn(f"{self.path.name}: this scan's {' and '.join(outside)} lie outside what the network was "
                          f"trained on: it may make the slices worse than its {channel_kinds(self.input_kind)[0]} "
                          "input - compare its output with that input", ModelDomainWarning, stacklevel=2)

    def photons_outside(self, photons: float | None) -> str | None:
        """Words for a scan whose photons per pixel (:func:`recon.io.noise.scan_photons`) are
        more than :data:`PHOTON_SLACK` times outside the card's training range, else None: a
        network trained on noisy inputs smooths a clean one (a blind probe: the FBP network at
        50,000 photons, 3.4 dB below its own FBP input)."""
        span = (self.card.get("data") or {}).get("photons")
        if photons is None or not (isinstance(span, (list, tuple)) and len(span) == 2):
            return None
        lo, hi = float(span[0]), float(span[1])
        if lo / PHOTON_SLACK <= photons <= hi * PHOTON_SLACK:
            return None
        return (f"{self.path.name}: trained on {lo:g}-{hi:g} photons per pixel; this scan's flats hold "
                f"{photons:,.0f}: the network may make the slices worse than its "
                f"{channel_kinds(self.input_kind)[0]} input - compare its output with that input")

    def provenance(self) -> dict:
        """What a written volume records of this network: name, weights file and sha256,
        input kind, normalization, training steps. The checksum is the card's (verified on
        load), else the file's own (the seed authors' checkpoint has no card)."""
        c = self.card
        # the file wherever the record is read from (blind probe AC: a relative --model was kept as typed)
        return {"name": c.get("name"), "weights": str(Path(self.path).absolute()), "input_kind": self.input_kind,
                "weights_sha256": c.get("weights_sha256") or _sha256(self.path),
                "normalization": self.normalization,
                "steps": c.get("steps")}

    def apply(self, volume: np.ndarray, zero_level: float | None = None, **options) -> np.ndarray:
        """Correct a (z, y, x) (or (y, x)) reconstruction of kind :attr:`input_kind`, attenuation
        per pixel with air at 0, in the network's own normalisation; see
        :func:`recon.infer.apply_model` for ``options`` (batch, tile, overlap, amp, zoom:
        ``"auto"`` by default, as :meth:`resolve_zoom` says). ``zero_level``: the input's value of
        zero attenuation, taken off before the network and put back after; None: found for an
        8- or 16-bit export from the slices' outer ring, as ``flytomo enhance`` finds it, and a
        warning where a float input's ring is off 0 (:func:`recon.air_level.zero_level`; blind
        probe X: a uint8 export lost 4 dB without a word)."""
        from recon.air_level import zero_level as air_level
        from recon.infer import apply_model

        one = np.ndim(volume) == 2
        stack = np.asarray(volume)[None] if one else volume
        zero = air_level(stack, "the reconstruction given to apply()", zero_level, remedy="zero_level=VALUE")
        if zero:
            stack = np.asarray(stack, dtype=np.float32) - np.float32(zero)
        options.setdefault("device", self.device)
        options["zoom"] = self.resolve_zoom(options.get("zoom", "auto"), min(stack.shape[-2:]))
        zoomed = options["zoomed"] = [] if options.get("zoomed") is None else options["zoomed"]
        first = len(zoomed)
        out = apply_model(self.model, stack, normalization=self.normalization, **options)
        self.check_slice_size(min(stack.shape[-2:]), zoomed[first:])
        if zero:
            out = out + np.float32(zero)
        return out[0] if one else out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _hardware() -> dict:
    import platform

    hw = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
          "cpu_count": os.cpu_count(), "torch": torch.__version__,
          "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return hw


def _paths(dir_or_path: str | Path, name: str) -> tuple[Path, Path]:
    p = Path(dir_or_path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
        return p.with_suffix(".safetensors"), p.with_suffix(".json")
    return p / f"{name}.safetensors", p / f"{name}.json"


def save_model(dir_or_path: str | Path, model: nn.Module, card: dict) -> Path:
    """Write ``model``'s weights and its card.

    Parameters
    ----------
    dir_or_path : a folder (files named after ``card["name"]``, default "model") or a
        ``NAME.safetensors`` path.
    model : a network built by :func:`recon.rrdb.build_model` (it has ``model.config``).
    card : at least ``input_kind`` and ``normalization``; ``architecture``, ``format``,
        ``flytomo_version``, ``created``, ``hardware`` and ``weights_sha256`` are filled in.

    Returns the ``.safetensors`` path. Both files are written to temporary names first and
    renamed, so a killed write leaves no file that claims to be complete.
    """
    from safetensors.torch import save_file

    import recon
    from recon.infer import NORMALIZATIONS

    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "architecture" not in config:
        raise FlytomoError("model", "has no .config with an 'architecture'; build it with "
                           "recon.rrdb.build_model")
    card = dict(card)
    if card.get("input_kind") not in INPUT_KINDS:
        raise FlytomoError("card.input_kind", f"must be one of {', '.join(INPUT_KINDS)}, "
                           f"got {card.get('input_kind')!r}")
    _check_channels({**card, "architecture": config}, "card.input_kind")
    if card.get("normalization") not in NORMALIZATIONS:
        raise FlytomoError("card.normalization", f"must be one of {', '.join(NORMALIZATIONS)}, "
                           f"got {card.get('normalization')!r}")
    name = str(card.get("name") or "model")
    wpath, cpath = _paths(dir_or_path, name)
    card["name"] = wpath.stem
    wpath.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous().clone()
             for k, v in model.state_dict().items()}
    tmp_w = wpath.with_name(wpath.name + ".tmp")
    tmp_c = cpath.with_name(cpath.name + ".tmp")
    save_file(state, str(tmp_w), metadata={"format": CARD_FORMAT,
                                           "architecture": json.dumps(config, sort_keys=True),
                                           "input_kind": str(card["input_kind"]),
                                           "normalization": str(card["normalization"])})
    _canonical_header(tmp_w)
    umask = os.umask(0)
    os.umask(umask)
    tmp_w.chmod(0o666 & ~umask)  # safetensors writes 0600: colleagues on a shared file system could not read it
    card.update({
        "format": CARD_FORMAT,
        "architecture": dict(config),
        "flytomo_version": recon.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "weights_file": wpath.name,
        "weights_sha256": _sha256(tmp_w),
        "n_parameters": int(sum(v.numel() for v in state.values())),
    })
    card.setdefault("hardware", _hardware())
    tmp_c.write_text(json.dumps(card, indent=2, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp_w, wpath)
    os.replace(tmp_c, cpath)
    return wpath


def _canonical_header(path: Path) -> None:
    """Rewrite a safetensors file's JSON header with sorted keys: safetensors writes its
    metadata in a random order, so saving the same tensors twice gave two file hashes (and two
    ``weights_sha256``). The tensors' byte offsets are relative to the data, which is kept."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])


def _check_card_against_header(card: dict, wpath: Path, cpath: Path) -> None:
    """The card's architecture (and, in files saved since session 30, input kind and
    normalisation) must be those the weights file was saved with: the card is plain JSON, and an
    edited one changed what the network computes without a word (26.9 dB -> 4.4 dB)."""
    from safetensors import safe_open

    try:
        with safe_open(str(wpath), "pt") as f:
            meta = f.metadata() or {}
    except Exception:  # noqa: BLE001 - an unreadable file is named by load_file below
        return
    saved = {k: meta[k] for k in ("input_kind", "normalization") if k in meta}
    if "architecture" in meta:
        try:
            saved["architecture"] = json.loads(meta["architecture"])
        except json.JSONDecodeError:
            return
    for key, value in saved.items():
        if card.get(key) != value:
            if key == "architecture":
                diff = sorted(k for k in set(value) | set(card[key]) if value.get(k) != card[key].get(k))
                what = ", ".join(f"{k}: card {card[key].get(k)!r}, file {value.get(k)!r}" for k in diff[:3])
            else:
                what = f"card {card.get(key)!r}, file {value!r}"
            raise FlytomoError(cpath, f"model card's {key} differs from the weights file's ({what}): an edited "
                                      "or mismatched card")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _load_strict(model: nn.Module, state: dict, path: Path) -> None:
    """``load_state_dict(strict=True)`` with one-line errors naming the file."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]

    def few(keys):
        return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")

    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors ({few(missing)})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensors ({few(unexpected)})")
    if shapes:
        k = shapes[0]
        problems.append(f"{len(shapes)} shape mismatches ({k}: file {tuple(state[k].shape)}, "
                        f"model {tuple(own[k].shape)})")
    if problems:
        raise FlytomoError(path, "weights do not fit the architecture: " + "; ".join(problems))
    bad = [k for k, v in state.items() if not torch.is_tensor(v) or not torch.isfinite(v).all()]
    if bad:
        raise FlytomoError(path, f"weights contain non-finite values ({few(bad)})")
    model.load_state_dict(state, strict=True)


def _check_kind(card: dict, input_kind: str | None, path: Path) -> None:
    if input_kind is not None and card.get("input_kind") != input_kind:
        raise FlytomoError(path, f"this model corrects {card.get('input_kind')!r} reconstructions, "
                           f"not {input_kind!r}; use a model trained on {input_kind!r} input")


def seed_checkpoint_path() -> Path:
    """Where the seed authors' checkpoint is expected: ``$FLYTOMO_SHARED`` or ``../shared``
    next to the checkout, ``data/seed-model/pre_trained_model.pth``."""
    root = os.environ.get("FLYTOMO_SHARED")
    base = Path(root) if root else Path(__file__).resolve().parents[3] / "shared"
    return base / "data" / "seed-model" / "pre_trained_model.pth"


#: keys under which training code stores the state dict in a checkpoint, in the order tried
WRAPPER_KEYS = ("state_dict", "params_ema", "params", "model", "net", "generator")


def load_seed_model(path: str | Path | None = None, *, device: str = "cpu") -> LoadedModel:
    """The seed authors' released RRDBNet (nf=16, nb=4, gc=32, 3 convs per dense block).

    ``path``: their ``pre_trained_model.pth`` (default :func:`seed_checkpoint_path`), read
    with ``torch.load(weights_only=True)`` (no arbitrary pickle) and loaded strictly. The
    card says input kind "fbp", normalization "seed" (clip negatives, divide by the 95th
    percentile of positive pixels per slice, multiply back).
    """
    from recon.rrdb import SEED_CONFIG, build_model

    given = path is not None
    path = Path(path) if given else seed_checkpoint_path()
    if not path.is_file():
        raise FlytomoError(path, "seed checkpoint not found" + ("" if given else (
            " (where seed: without a path looks: $FLYTOMO_SHARED/data/seed-model/, else ../shared beside the "
            "checkout); name the file: --model seed:PATH/pre_trained_model.pth")))
    try:
        with warnings.catch_warnings():  # torch's words on an odd pickle protocol: the refusal below says it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - truncated, not a checkpoint, or code in the pickle
        text = str(err)
        if "weights_only" in text or "Unsupported global" in text:  # torch's advice to unpickle is not ours
            why = "it holds pickled objects, not only tensors, and flytomo never unpickles code"
        else:
            why = f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"
        raise FlytomoError(path, f"not a readable PyTorch state dict ({why})") from None
    # a state dict wrapped as training code saves one: {"state_dict": ...} (Lightning), {"params_ema":
    # ...} or {"params": ...} (BasicSR, the EMA weights first), {"model": ..., "epoch": ...} (blind probe AC)
    for key in WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict) and not torch.is_tensor(state[key]):
            state = state[key]
            break
    if isinstance(state, dict) and any(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k.removeprefix("module."): v for k, v in state.items()}
    if not isinstance(state, dict):
        raise FlytomoError(path, f"expected a state dict, found {type(state).__name__}")
    model = build_model(dict(SEED_CONFIG))
    _load_strict(model, dict(state), path)
    card = {
        "name": "seed-rrdb", "format": CARD_FORMAT, "architecture": dict(model.config),
        "input_kind": "fbp", "input_options": {}, "normalization": "seed",
        "training": {"source": "Zhang, Lee, Ge, Communications Materials 3, 91 (2022)",
                     "loss": "mse", "batch": 8, "optimizer": "Adam", "lr": 2e-4},
        "data": {"pairs": 10000, "size": 512, "input": "FBP of simulated fly-scans"},
        "license": "Apache-2.0 (seed authors)", "weights_file": path.name,
    }
    return LoadedModel(model.to(device).eval(), card, path, str(device))


def default_weights_path(input_kind: str = DEFAULT_INPUT_KIND) -> Path:
    """The shipped model for ``input_kind``: ``recon/weights/rrdb-<input_kind>.safetensors``."""
    return WEIGHTS_DIR / f"rrdb-{input_kind}.safetensors"


def load_model(spec: str | Path | None = None, *, input_kind: str | None = None,
               device: str = "cpu") -> LoadedModel:
    """Load a correction network.

    Parameters
    ----------
    spec : ``PATH.safetensors`` (or its ``PATH.json`` card) — a flytomo model, card beside
        it; ``"seed:PATH"`` — the seed authors' checkpoint (``"seed:"`` alone: the default
        location); ``None`` — the shipped model for ``input_kind`` in ``recon/weights/``.
    input_kind : the reconstruction the model will be applied to ("fbp", "mlem-flyscan", …);
        a model trained on another kind is refused. ``None``: no check (and
        :data:`DEFAULT_INPUT_KIND` for the shipped default).
    device : where to put the network.

    Raises :class:`FlytomoError` (file and problem, one line) for a missing, truncated or
    corrupt file, a missing or bad card, weights that do not fit the card's architecture,
    or an input-kind mismatch.
    """
    from safetensors.torch import load_file

    from recon.device import torch_device
    from recon.rrdb import build_model

    device = str(torch_device(device))  # a device this machine lacks: one line, before any file is read
    if input_kind is not None and input_kind not in INPUT_KINDS:
        raise FlytomoError("input_kind", f"unknown input kind {input_kind!r}; known: "
                           f"{', '.join(INPUT_KINDS)}")
    if spec is None:
        kind = input_kind or DEFAULT_INPUT_KIND
        wpath = default_weights_path(kind)
        if not wpath.is_file():
            raise FlytomoError(wpath, f"no shipped network takes {kind} reconstructions (the shipped "
                               f"ones take {', '.join(shipped_input_kinds()) or 'none'}); name a weights "
                               "file (--model PATH.safetensors, or rrdb.model in a config), train one with "
                               "`flytomo train`, or reconstruct with a method a shipped network takes")
    else:
        s = str(spec)
        if s.startswith("seed:"):
            loaded = load_seed_model(s[5:] or None, device=device)
            _check_kind(loaded.card, input_kind, loaded.path)
            return loaded
        wpath = Path(s)
        if wpath.suffix == ".json":
            wpath = wpath.with_suffix(".safetensors")
        if wpath.suffix in (".pth", ".pt", ".ckpt"):
            raise FlytomoError(wpath, "a pickled PyTorch checkpoint; flytomo models are "
                               ".safetensors files (for the seed authors' model use 'seed:PATH')")
    cpath = wpath.with_suffix(".json")
    if not wpath.is_file():
        raise FlytomoError(wpath, "model weights file not found")
    if not cpath.is_file():
        raise FlytomoError(cpath, "model card (JSON beside the weights) not found")
    try:
        card = json.loads(cpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FlytomoError(cpath, f"model card is not valid JSON ({err})") from None
    if not isinstance(card, dict):
        raise FlytomoError(cpath, "model card must be a JSON object")
    for key in ("architecture", "input_kind", "normalization"):
        if key not in card:
            raise FlytomoError(cpath, f"model card lacks {key!r}")
    if not isinstance(card["architecture"], dict):
        raise FlytomoError(cpath, "model card 'architecture' must be an object")
    _check_card_against_header(card, wpath, cpath)
    _check_kind(card, input_kind, wpath)
    if card["input_kind"] not in INPUT_KINDS:
        raise FlytomoError(cpath, f"model card input_kind {card['input_kind']!r} is not one of "
                           f"{', '.join(INPUT_KINDS)}")
    _check_channels(card, cpath)
    want = card.get("weights_sha256")
    if want and _sha256(wpath) != want:
        raise FlytomoError(wpath, "weights file does not match its model card (sha256 differs): "
                           "truncated, corrupt or replaced")
    try:
        state = load_file(str(wpath), device="cpu")
    except Exception as err:  # noqa: BLE001 - safetensors raises its own types for bad headers
        msg = str(err).splitlines()[0] if str(err) else ""
        raise FlytomoError(wpath, f"not a readable safetensors file ({type(err).__name__}: "
                           f"{msg})") from None
    try:
        model = build_model(card["architecture"])
    except FlytomoError as err:
        raise FlytomoError(cpath, f"bad architecture in model card: {err}") from None
    _load_strict(model, state, wpath)
    return LoadedModel(model.to(device).eval(), card, wpath, str(device))
