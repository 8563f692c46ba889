"""The one dispatch point for reconstruction methods (as TomoPy's ``recon``).

Every method maps line integrals (z, n_angles, n_columns) + a :class:`ScanGeometry` to a
volume (z, n, n) float32, attenuation per pixel. Options are checked against the method's
allowed names before any work. ``make_reconstructor`` builds operators (and a model) once
and reuses them for every chunk of rows with that geometry.
"""
from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from recon.device import torch_device
from recon.errors import FlytomoError
from recon.fbp import WINDOWS, fbp, widened
from recon.geometry import ScanGeometry
from recon.mlem import DEFAULT_ITERATIONS, DEFAULT_ITERATIONS_FLYSCAN, MAX_ITERATIONS, mlem
from recon.operators import FlyScanProjector, Projector, SubAngleProjector
from recon.truncation import extend_sinogram

SliceFn = Callable[[torch.Tensor], torch.Tensor]  # (B, n_angles, n_columns) → (B, n, n)


@dataclass(frozen=True)
class Method:
    """A reconstruction method: its option names with defaults and a builder of slice functions."""

    name: str
    defaults: dict[str, Any]
    build: Callable[[ScanGeometry, torch.device, dict[str, Any]], SliceFn]
    summary: str


def _check_int(name: str, value: Any, low: int) -> int:
    try:
        ok = not isinstance(value, bool) and float(value).is_integer() and int(value) >= low
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise FlytomoError(None, f"option {name} must be an integer ≥ {low}, got {value!r}")
    return int(value)


def _build_fbp(geometry: ScanGeometry, device: torch.device, opts: dict[str, Any]) -> SliceFn:
    check_option_values(opts)
    wide, pad = widened(geometry)
    projector = Projector(wide, device)
    return lambda sino: fbp(sino, projector, opts["window"], pad)


#: fly-scan forward models of mlem-flyscan: R̄ = R·B (one sparse blur; the default) or the
#: seed's mean of R over sub-angles (exact up to the sub-angles, n_sub times R's cost)
FLYSCAN_OPERATORS = ("fast", "subangle")
#: sub-angles of the "subangle" operator: the rim of the slice moves at most this many pixels
#: between two of them
SUBANGLE_ARC_PX = 0.5


def subangle_count(geometry: ScanGeometry) -> int:
    """Sub-angles for the exact fly-scan operator: the farthest pixel from the axis moves at
    most :data:`SUBANGLE_ARC_PX` between them (512², 1.5°: 19)."""
    r_max = (geometry.image_size - 1) / math.sqrt(2.0)
    return max(1, math.ceil(r_max * geometry.blur_angle / SUBANGLE_ARC_PX))


def _step_projector(geometry: ScanGeometry, device: torch.device, opts: dict[str, Any]) -> Projector:
    return Projector(geometry, device)


def _flyscan_projector(geometry: ScanGeometry, device: torch.device, opts: dict[str, Any]) -> Projector:
    if opts.get("operator") == "subangle":
        return SubAngleProjector(geometry, subangle_count(geometry), device)
    return FlyScanProjector(geometry, device)


def _mlem_builder(make_projector: Callable[[ScanGeometry, torch.device, dict[str, Any]], Projector],
                  fixed: int) -> Callable[..., SliceFn]:
    """MLEM with the forward model ``make_projector(geometry, device, options)`` builds; an FBP
    start (``init: fbp``) always filters with the step projector R. ``iterations: auto`` stops
    each slice at its noise (:func:`recon.mlem.mlem`'s ``variance``, at most
    :data:`~recon.mlem.MAX_ITERATIONS`) and runs ``fixed`` where the noise is not known (no
    variance given, or flats that cannot tell: :mod:`recon.io.noise`)."""
    def build(geometry: ScanGeometry, device: torch.device, opts: dict[str, Any]) -> SliceFn:
        check_option_values(opts)
        auto = opts["iterations"] == "auto"
        iterations = fixed if auto else int(opts["iterations"])
        projector = make_projector(geometry, device, opts)
        start = (Projector(geometry, device) if opts["init"] == "fbp" and type(projector) is not Projector
                 else projector)

        def run(sino: torch.Tensor, variance: torch.Tensor | None = None,
                stopped: list[int] | None = None) -> torch.Tensor:
            x0 = fbp(sino, start).clamp_min(0) if opts["init"] == "fbp" else None
            return mlem(sino, projector, iterations, x0=x0, variance=variance if auto else None,
                        max_iterations=MAX_ITERATIONS, stopped=stopped)
        run.uses_variance = auto  # type: ignore[attr-defined]
        run.counts_iterations = True  # type: ignore[attr-defined]
        return run
    return build


#: the first-stage options every shipped network was trained on where its card names none
NETWORK_INPUT: dict[str, Any] = {"iterations": DEFAULT_ITERATIONS_FLYSCAN}

#: first-stage reconstructions the rrdb method can feed its network ("a+b": both, stacked
#: as channels, the first one primary)
RRDB_INPUTS = ("fbp", "mlem-flyscan", "mlem-flyscan+fbp")


#: the weight of the second network in the default rrdb method's mean (its first stage is
#: FBP, the main network's modified MLEM; chosen on the 8 validation images of the Table-1
#: protocol, docs/benchmarks.md "Two networks, two first stages")
BLEND_WEIGHT = 0.3


def blend_spec(opts: dict[str, Any], image_size: int | None = None) -> str | None:
    """The second network that option ``blend`` selects: ``"auto"`` (or None) → the shipped
    FBP network when the main one is the shipped default (no ``model``, the default input
    kind) and the slices (``image_size`` px; None: not known yet), at the largest zoom option
    ``zoom`` gives them, are no smaller than the smallest sample it was trained on, else none; ``"none"`` → none; anything else is a model
    spec (path, ``seed:PATH``)."""
    from recon.weights import DEFAULT_BLEND, DEFAULT_INPUT_KIND, fits_trained_size

    blend = opts.get("blend") or "auto"
    if blend == "none":
        return None
    if blend != "auto":
        return blend
    if opts.get("model") is not None or opts.get("rrdb_input") not in (None, DEFAULT_INPUT_KIND):
        return None
    seen = None if image_size is None else round(image_size * _largest_zoom(opts, image_size))
    return str(DEFAULT_BLEND) if fits_trained_size(DEFAULT_BLEND, seen) else None


def _largest_zoom(opts: dict[str, Any], image_size: int | None) -> float:
    """The largest zoom option ``zoom`` can give slices of ``image_size`` px (None: not known)."""
    from recon.infer import AUTO_ZOOM, ZOOM_MAX_SIZE

    zoom = opts.get("zoom") or "auto"
    if zoom != "auto":
        return float(zoom)
    return AUTO_ZOOM if image_size is None or image_size < ZOOM_MAX_SIZE else 1.0


def resolve_networks(opts: dict[str, Any], image_size: int | None) -> dict[str, Any]:
    """Options of the ``rrdb`` method with its networks chosen for slices of ``image_size`` px
    (unpadded; None: not known yet): ``blend`` ("none" where :func:`blend_spec` gives none,
    else as given: "auto" or a model spec) and,
    where no ``model`` is given, the shipped one for the input kind and size
    (:func:`recon.weights.default_model_spec`)."""
    from recon.weights import default_model_spec

    out = dict(opts)
    spec = blend_spec(opts, image_size)
    # "auto" kept where it gives the shipped network: the rrdb method then fits it to each slice's zoom
    out["blend"] = "none" if spec is None else "auto" if (opts.get("blend") or "auto") == "auto" else spec
    if out.get("model") is None:
        out["model"] = default_model_spec(out.get("rrdb_input"), image_size)
    return out


def _network_stage(geometry: ScanGeometry, device: torch.device, opts: dict[str, Any], model: Any,
                   kind: str | None, stages: dict | None = None) -> SliceFn:
    """One network and the first stage(s) its card names: sinograms → corrected slices. ``stages``:
    first stages already built for this geometry and device, by method and options, reused (and
    added to): a reconstructor remade for another network zoom builds no operator again."""
    from recon.infer import network_slice_fn  # torch model code only when asked for
    from recon.weights import ModelDomainWarning, channel_kinds, load_model

    # the model decides the first stage when kind is None (no model: the shipped default)
    loaded = load_model(model, input_kind=kind, device=str(device))
    loaded.check_scan(math.pi / geometry.folded_step, geometry.blur_angle_deg)  # angles per half turn
    kind = loaded.input_kind
    if kind not in RRDB_INPUTS:
        raise FlytomoError(loaded.path, f"this model corrects {kind!r} reconstructions; the rrdb method "
                                        f"runs on {' or '.join(RRDB_INPUTS)}")
    trained_all = loaded.card.get("input_options") or {}
    firsts, used = [], []
    for first in (METHODS[k] for k in channel_kinds(kind)):
        # a network corrects the first stage it was trained on: modified MLEM of a fixed count
        trained = {k: v for k, v in {**NETWORK_INPUT, **trained_all}.items() if k in first.defaults}
        given = {k: opts[k] for k in first.defaults if opts.get(k) is not None}
        if "iterations" in trained and given.get("iterations") == "auto":
            raise FlytomoError(loaded.path, f"corrects modified MLEM of {trained['iterations']} iterations, as it was "
                                            "trained: iterations auto is for the mlem and mlem-flyscan methods")
        if "iterations" in trained and given.get("iterations", trained["iterations"]) != trained["iterations"]:
            warnings.warn(f"{loaded.path.name}: trained on modified MLEM of {trained['iterations']} iterations; "
                          f"{given['iterations']} give it another input: compare its output with the default's",
                          ModelDomainWarning, stacklevel=2)
        stage_opts = {**first.defaults, **trained, **given}
        used.append({"method": first.name, **stage_opts})
        key = (first.name, tuple(sorted((k, repr(v)) for k, v in stage_opts.items())))
        fn = None if stages is None else stages.get(key)
        if fn is None:
            fn = first.build(geometry, device, stage_opts)
            if stages is not None:
                stages[key] = fn
        firsts.append(fn)
    stage1 = firsts[0] if len(firsts) == 1 else (lambda sino: torch.stack([f(sino) for f in firsts], dim=1))
    fn = network_slice_fn(stage1, loaded, kind, device, tile=opts["tile"], amp=bool(opts["amp"]),
                          self_ensemble=bool(opts["self_ensemble"]), zoom=scan_zoom(opts["zoom"], geometry),
                          image_size=geometry.image_size)
    fn.first_stage_options = used  # what ran: a card's iterations where none were given (blind probe AC)
    return fn


def scan_zoom(zoom: float | str, geometry: ScanGeometry | None) -> float | str:
    """The network zoom option for slices of a scan of ``geometry`` (None: not known): ``"auto"``
    becomes 1 where the scan has too few projections for its slice size
    (:func:`recon.infer.sampled_for_zoom`: zooming lost there, docs/benchmarks.md), else stays."""
    from recon.infer import sampled_for_zoom

    if zoom == "auto" and geometry is not None and not sampled_for_zoom(math.pi / geometry.folded_step,
                                                                        geometry.image_size):
        return 1.0
    return zoom


def fixed_zoom_choice(loaded: Any, geometry: ScanGeometry | None, image_size: int | None = None) -> Any:
    """Zoom 1 with its reason (a :class:`recon.infer.ZoomChoice`) where flytomo's network
    ``loaded`` would judge a zoom (zoom auto) but the slices cannot take one: zoom would take
    slices of ``image_size`` px (else the geometry's) past the largest sample it was trained on,
    or the scan of ``geometry`` has too few projections (:func:`scan_zoom`); else None (the
    seed's network runs at 1 as its authors ran it, without a word)."""
    from recon.infer import AUTO_ZOOM, ZoomChoice

    size = geometry.image_size if geometry is not None else image_size
    if loaded.resolve_zoom("auto") == 1.0:
        return None
    if loaded.resolve_zoom("auto", size) == 1.0:
        return ZoomChoice(1.0, float("nan"), 0.0, 0, reason=f"{loaded.path.name} was trained on samples up to "
                          f"{loaded.trained_object_px()[1]:.0f} px across: zoom {AUTO_ZOOM:g} would take these "
                          f"{size}-px slices past them")
    if geometry is None or scan_zoom("auto", geometry) != 1.0:
        return None
    return ZoomChoice(1.0, float("nan"), 0.0, 0, reason=f"{math.pi / geometry.folded_step:.0f} projections per "
                      f"half turn: too few to zoom slices of {geometry.image_size} px")


def judge_scan_zoom(rec: "Reconstructor", reader: Any, z0: int, z1: int, *, corrections: Any = None,
                    jitter: Any = None, tilt: Any = None) -> tuple[Any, tuple[int, int]]:
    """The one network zoom of rows z0:z1 of a scan (``reader``) for ``rec``
    (:meth:`Reconstructor.choose_zoom`; None: nothing to choose), judged on the rows of the
    window :func:`recon.infer.zoom_sample_rows` finds by :func:`recon.io.preprocess.row_mass` that
    hold the sample, read as a reconstruction reads them; and that window (a, b)."""
    from recon.infer import zoom_sample_rows
    from recon.io.alignment import read_line_integrals
    from recon.io.preprocess import row_mass

    a, b, held = zoom_sample_rows(z1 - z0, row_mass(reader, z0, z1))
    a, b = z0 + a, z0 + b
    sino = read_line_integrals(reader, a, b, corrections=corrections, jitter=jitter, tilt=tilt, columns=False)
    return rec.choose_zoom(sino[held]), (a, b)


def blend_outputs(main: Any, second: Any, weight: float) -> Any:
    """The rrdb method's mean of two networks' outputs (arrays or tensors (..., y, x) of one
    shape): (1 − weight) · main + weight · second inside each slice's inscribed disk (the field
    every angle saw), main alone outside it (the second, FBP, network's corners, where nothing
    was measured, held 2-5 % of the sample's mean)."""
    disk = _inscribed_disk(main.shape[-2:])
    if isinstance(main, torch.Tensor):
        disk = torch.from_numpy(disk).to(device=main.device, dtype=main.dtype)
    else:
        disk = disk.astype(np.result_type(main.dtype, np.float32), copy=False)
    w = weight * disk
    return (1.0 - w) * main + w * second


def _inscribed_disk(shape: tuple[int, ...]) -> np.ndarray:
    """(y, x) float32: 1 inside the inscribed disk of a slice of ``shape``, 0 outside."""
    ny, nx = int(shape[0]), int(shape[1])
    y = np.arange(ny, dtype=np.float32) - (ny - 1) / 2
    x = np.arange(nx, dtype=np.float32) - (nx - 1) / 2
    return (y[:, None] ** 2 + x[None, :] ** 2 <= (min(ny, nx) / 2) ** 2).astype(np.float32)


def _build_rrdb(geometry: ScanGeometry, device: torch.device, opts: dict[str, Any],
                stages: dict | None = None) -> SliceFn:
    check_option_values(opts)
    main = _network_stage(geometry, device, opts, opts["model"], opts["rrdb_input"], stages)
    spec = blend_spec(opts)
    if spec is None:
        return main
    second = _network_stage(geometry, device, opts, spec, None, stages)
    w = float(opts["blend_weight"])  # resolved: the default is in METHODS["rrdb"]

    # auto: the FBP network only on slices it sees at least as large as its smallest training sample
    # (its card read once, here: as recon.weights.fits_trained_size reads it from the file)
    trained = None if (opts.get("blend") or "auto") != "auto" else second.loaded.trained_object_px()

    def run(sino: torch.Tensor, zoomed: list[float] | None = None) -> torch.Tensor:
        from recon.infer import slice_zooms

        first = main.first_stage(sino)
        zooms = slice_zooms(first, main.zoom)  # the main network's choice, for both: they are averaged
        out = main.network(first, zooms, zoomed)
        both = [trained is None or round(geometry.image_size * z) >= trained[0] for z in zooms]
        if all(both):
            return blend_outputs(out, second(sino, zooms), w)
        if any(both):
            idx = [i for i, b in enumerate(both) if b]
            at = torch.tensor(idx, device=out.device)
            out[at] = blend_outputs(out[at], second(sino[torch.tensor(idx, device=sino.device)],
                                                    [zooms[i] for i in idx]), w)
        return out

    run.loaded = main.loaded  # provenance: the main network's card, and the second one's
    run.first_stage, run.zoom = main.first_stage, main.zoom  # what Reconstructor.choose_zoom judges
    run.blend = (second.loaded, w)
    run.reports_zoom = True
    run.first_stage_options = main.first_stage_options
    return run


def network_provenance(loaded: Any, blend: tuple[Any, float] | None) -> dict[str, Any]:
    """What a written volume records of the rrdb method's networks: the main one's
    :meth:`~recon.weights.LoadedModel.provenance`, with ``blend`` (the second one's and its
    ``weight``) or ``blend: None``."""
    out = loaded.provenance()
    out["blend"] = {**blend[0].provenance(), "weight": blend[1]} if blend else None
    return out


def network_key(provenance: dict[str, Any] | None) -> str | None:
    """The weights a run plans with, as one string (a store's plan, checked on workers): the
    main network's sha256, then ``+WEIGHT:SHA256`` of a second one."""
    if provenance is None:
        return None
    b = provenance.get("blend")
    return provenance["weights_sha256"] + (f"+{b['weight']:g}:{b['weights_sha256']}" if b else "")


METHODS: dict[str, Method] = {
    "fbp": Method("fbp", {"window": "ramp"}, _build_fbp, "filtered backprojection, ramp filter with a window"),
    "mlem": Method("mlem", {"iterations": DEFAULT_ITERATIONS, "init": "uniform"},
                   _mlem_builder(_step_projector, DEFAULT_ITERATIONS),
                   "MLEM with the step-scan projector R (the seed's naive MLEM)"),
    "mlem-flyscan": Method("mlem-flyscan", {"iterations": DEFAULT_ITERATIONS_FLYSCAN, "init": "uniform",
                                            "operator": "fast"},
                           _mlem_builder(_flyscan_projector, DEFAULT_ITERATIONS_FLYSCAN),
                           "MLEM with a fly-scan operator: R̄ = R·B (fast), or the mean of R over "
                           "sub-angles (subangle; the seed's modified MLEM)"),
    "rrdb": Method("rrdb", {"model": None, "rrdb_input": None, "blend": "auto", "blend_weight": BLEND_WEIGHT,
                            "tile": None, "zoom": "auto", "self_ensemble": False, "amp": False, "window": None, "iterations": None,
                            "init": None}, _build_rrdb,
                   "RRDB network applied to an FBP or modified-MLEM reconstruction (or both)"),
}


def model_provenance(method: str, options: dict[str, Any], image_size: int | None = None) -> dict[str, Any] | None:
    """For the ``rrdb`` method: which networks ``options`` select for slices of ``image_size``
    px (:func:`network_provenance`: name, weights file and its sha256, input kind; the second
    network and its weight; :func:`blend_spec`), for the provenance of a written volume;
    loading them also checks them before any work. ``None`` for the other methods."""
    nets = _networks(method, options, image_size)
    return None if nets is None else network_provenance(nets[0], nets[1])


def _networks(method: str, options: dict[str, Any], image_size: int | None) -> tuple[Any, tuple[Any, float] | None] | None:
    """The rrdb method's loaded networks for ``options`` and slices of ``image_size``: (main,
    (second, weight) or None); None for the other methods."""
    if method != "rrdb":
        return None
    from recon.weights import load_model

    opts = resolve_networks(resolve_options(method, options), image_size)
    spec = blend_spec(opts)
    return (load_model(opts["model"], input_kind=opts["rrdb_input"]),
            (load_model(spec), float(opts["blend_weight"])) if spec else None)


def dose_warnings(method: str, options: dict[str, Any], image_size: int | None,
                  photons: list[float | None]) -> list[list[str]]:
    """For the rrdb method: per entry of ``photons`` (per pixel in a flat, one per scan), a line
    per network trained on doses far from it (:meth:`recon.weights.LoadedModel.photons_outside`);
    empty lists for the other methods."""
    nets = _networks(method, options, image_size)
    if nets is None:
        return [[] for _ in photons]
    models = [nets[0]] + ([nets[1][0]] if nets[1] else [])
    return [[w for w in (m.photons_outside(p) for m in models) if w] for p in photons]


def uses_blur(method: str, options: dict[str, Any] | None = None) -> bool:
    """Whether ``method`` models the fly-scan blur (modified MLEM, and the rrdb method unless
    its network's input is FBP alone: ``rrdb_input: fbp``, the seed's network, or a model whose
    card says so): where the blur angle is only assumed, that is worth a warning."""
    if method == "mlem-flyscan":
        return True
    return method == "rrdb" and _main_input_kind(options or {}) != "fbp"


def _main_input_kind(options: dict[str, Any]) -> str | None:
    """The rrdb method's main network's input kind from its options, without loading it: the
    option, else "fbp" for the seed authors' network, else its card's; None where unknown
    (the shipped default's: modified MLEM)."""
    if options.get("rrdb_input"):
        return str(options["rrdb_input"])
    spec = options.get("model")
    if spec is None:
        return None
    if str(spec).startswith("seed:"):
        return "fbp"
    from recon.weights import card_of

    try:
        return card_of(str(spec)).get("input_kind")
    except (OSError, ValueError, AttributeError):
        return None


def method_names() -> list[str]:
    return list(METHODS)


def check_option_values(options: dict[str, Any]) -> None:
    """Raise FlytomoError (one line) for a bad value of any method option in ``options``
    (``None`` means the default): iterations an integer ≥ 1 or "auto", init 'uniform' or 'fbp', a
    known FBP window, a known rrdb input kind, a tile of ≥ 1 px, zoom 'auto' or 1-4, self_ensemble and amp bools,
    blend a string and blend_weight a number in (0, 1)."""
    o = {k: v for k, v in options.items() if v is not None}
    if "iterations" in o and o["iterations"] != "auto":
        try:
            _check_int("iterations", o["iterations"], 1)
        except FlytomoError:
            raise FlytomoError(None, f"option iterations must be an integer ≥ 1 or 'auto' (stop each slice at "
                                     f"its noise), got {o['iterations']!r}") from None
    if "tile" in o:
        _check_int("tile", o["tile"], 1)
    if o.get("zoom", "auto") != "auto":
        from recon.infer import check_zoom
        try:
            check_zoom(o["zoom"])
        except FlytomoError as e:
            raise FlytomoError(None, f"option {e.problem}") from None
    if "blend_weight" in o:
        w = o["blend_weight"]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 < float(w) < 1.0:
            raise FlytomoError(None, f"option blend_weight must be a number between 0 and 1 (the second "
                                     f"network's share), got {w!r}")
    if not isinstance(o.get("blend", "auto"), str):
        raise FlytomoError(None, f"option blend must be 'auto', 'none' or a weights file, got {o['blend']!r}")
    for flag in ("self_ensemble", "amp"):
        if not isinstance(o.get(flag, False), bool):
            raise FlytomoError(None, f"option {flag} must be true or false, got {o[flag]!r}")
    if o.get("init", "uniform") not in ("uniform", "fbp"):
        raise FlytomoError(None, f"option init must be 'uniform' or 'fbp', got {o['init']!r}")
    if o.get("window", "ramp") not in WINDOWS:
        raise FlytomoError(None, f"unknown FBP window '{o['window']}'; choose one of {', '.join(WINDOWS)}")
    if o.get("operator", "fast") not in FLYSCAN_OPERATORS:
        raise FlytomoError(None, f"option operator must be one of {', '.join(FLYSCAN_OPERATORS)}, "
                                 f"got {o['operator']!r}")
    if o.get("rrdb_input", RRDB_INPUTS[0]) not in RRDB_INPUTS:
        raise FlytomoError(None, f"option rrdb_input must be one of {', '.join(RRDB_INPUTS)}, "
                                 f"got {o['rrdb_input']!r}")


def resolve_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in; an unknown method, an unknown option or a bad value raises
    FlytomoError before any work."""
    if method not in METHODS:
        raise FlytomoError(None, f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    spec = METHODS[method]
    unknown = sorted(set(options) - set(spec.defaults))
    if unknown:
        raise FlytomoError(None, f"method {method} takes no option {', '.join(unknown)} "
                                 f"(it takes {', '.join(spec.defaults) or 'none'})")
    check_option_values(options)
    return {**spec.defaults, **{k: v for k, v in options.items() if v is not None}}


class Reconstructor:
    """Operators (and a model) for one geometry and method, built once; call on many chunks.

    ``__call__(sino, variance=None, stopped=None, zoomed=None)``: line integrals (z, n_angles, n_columns),
    numpy or torch → volume (z, n, n) float32 numpy, processed ``batch`` slices at a time;
    ``variance`` (same shape, :func:`recon.io.noise.line_integral_variance`) lets MLEM's
    ``iterations: auto`` stop each slice at its noise; a list ``stopped`` gets MLEM's
    iterations per slice, a list ``zoomed`` the rrdb method's network zoom per slice (one
    reconstructor may serve several threads). A geometry with
    ``pad_columns`` p is reconstructed on its :meth:`~recon.geometry.ScanGeometry.extended`
    grid from sinograms continued p columns past each edge (:mod:`recon.truncation`), and the
    middle n × n kept.
    """

    def __init__(self, geometry: ScanGeometry, method: str, device: str = "cpu", batch: int = 64,
                 *, stages: dict | None = None, **options: Any) -> None:
        self.geometry = geometry
        self.method = method
        self.options = resolve_options(method, options)
        if method == "rrdb":  # the networks for the (unpadded) slice size: second one, FBP model
            self.options = resolve_networks(self.options, geometry.image_size)
        self.device = torch_device(device)
        self.batch = _check_int("batch", batch, 1)
        #: the rrdb method's first stages by method and options (built once: :meth:`with_zoom` shares them)
        self._stages = {} if stages is None else stages
        extra = {"stages": self._stages} if method == "rrdb" else {}
        self._fn = METHODS[method].build(geometry.extended(), self.device, self.options, **extra)
        #: the network of method rrdb (a :class:`recon.weights.LoadedModel`), else None
        self.model = getattr(self._fn, "loaded", None)
        #: rrdb's second network and its weight in the mean, else None
        self.blend = getattr(self._fn, "blend", None)
        #: rrdb's main network's first stage(s) as they run: [{"method", its options}] per input channel, else None
        self.first_stage_options = getattr(self._fn, "first_stage_options", None)
        #: whether a variance changes the result (MLEM with ``iterations: auto``)
        self.uses_variance = bool(getattr(self._fn, "uses_variance", False))

    def provenance(self) -> dict[str, Any] | None:
        """The networks of method rrdb (:func:`network_provenance`), else None."""
        return network_provenance(self.model, self.blend) if self.model is not None else None

    def _sinograms(self, sino: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Line integrals (z, n_angles, n_columns) as a tensor, checked against the geometry,
        NaN/infinite values taken as 0 (with a warning)."""
        integer = (sino.dtype.is_floating_point is False) if isinstance(sino, torch.Tensor) else \
            np.issubdtype(np.asarray(sino).dtype, np.integer)
        if not isinstance(sino, torch.Tensor):  # any byte order (h5py gives big-endian '>f4' as stored)
            sino = np.asarray(sino, dtype=np.float32)
        s = torch.as_tensor(sino)
        expected = (self.geometry.n_angles, self.geometry.n_columns)
        if s.dim() != 3 or tuple(s.shape[1:]) != expected:
            hint = ("; one sinogram (angle, column): pass it as sino[None]" if tuple(s.shape) == expected else
                    "; a projection stack (angle, row, column), as tomopy holds it: pass it .transpose(1, 0, 2)"
                    if s.dim() == 3 and (s.shape[0], s.shape[2]) == expected else "")
            raise FlytomoError(None, f"sinogram shape {tuple(s.shape)} does not match the geometry "
                                     f"(z, {expected[0]} angles, {expected[1]} columns){hint}")
        if integer:  # a probe's raw counts reconstructed to -57..49 without a word
            warnings.warn("the sinograms hold integers: detector counts? reconstruction takes line integrals "
                          "-log((counts - dark)/(flat - dark)) (recon.io.line_integrals), attenuation per pixel",
                          UserWarning, stacklevel=3)
        elif s.numel() and float((sf := s.float()).mean()) < -0.5 * float(sf.abs().mean()):
            # MLEM of a flipped sign: all zeros (rows of air alone have a mean near 0 either way:
            # a chunk of them drew this warning at the ends of a 48³ scan)
            warnings.warn("the line integrals are negative on the whole: -log of transmissions below 1 is positive "
                          "(is the sign flipped, or are these log(I/I0)?)", UserWarning, stacklevel=3)
        bad = ~torch.isfinite(s)
        if bool(bad.any()):  # one NaN made FBP's whole slice NaN (its ramp filter spreads it)
            warnings.warn(f"{int(bad.sum())} NaN/infinite line integral(s) taken as 0 (flytomo's file readers "
                          "repair them from their neighbours first)", UserWarning, stacklevel=3)
            s = torch.where(bad, torch.zeros((), dtype=s.dtype), s)
        return s

    def choose_zoom(self, sino: np.ndarray | torch.Tensor) -> Any:
        """The one network zoom (a :class:`recon.infer.ZoomChoice`) this rrdb reconstructor's
        ``zoom: auto`` gives a whole scan, judged on the first-stage slices of line integrals
        ``sino`` (z, n_angles, n_columns): the rows :func:`judge_scan_zoom` picks. None
        where there is nothing to choose: another method, a zoom given as a number, the seed's
        network; zoom 1 with its reason where the slices cannot take one (:func:`fixed_zoom_choice`)."""
        from recon.infer import AUTO_ZOOM_RULES, choose_zoom

        rule = getattr(self._fn, "zoom", None)
        if not isinstance(rule, str) or rule not in AUTO_ZOOM_RULES:
            loaded = getattr(self._fn, "loaded", None)
            if self.options.get("zoom") == "auto" and loaded is not None:
                return fixed_zoom_choice(loaded, self.geometry)  # flytomo's network, auto, but kept at 1: why
            return None
        s, p = self._sinograms(sino), self.geometry.pad_columns
        with torch.no_grad():
            first = [self._fn.first_stage(extend_sinogram(s[z0:z0 + self.batch].to(self.device, torch.float32), p))
                     for z0 in range(0, s.shape[0], self.batch)]
        return choose_zoom(torch.cat(first).cpu(), rule)

    def with_zoom(self, zoom: float) -> "Reconstructor":
        """This reconstructor with the network zoom ``zoom`` for every slice (networks reloaded, the
        first stages' operators shared)."""
        return Reconstructor(self.geometry, self.method, str(self.device), self.batch, stages=self._stages,
                             **{**self.options, "zoom": zoom})

    def __call__(self, sino: np.ndarray | torch.Tensor, variance: np.ndarray | None = None,
                 stopped: list[int] | None = None, zoomed: list[float] | None = None) -> np.ndarray:
        s = self._sinograms(sino)
        out = []
        p, m, n = self.geometry.pad_columns, self.geometry.margin, self.geometry.image_size
        var = None
        if variance is None and self.uses_variance:
            warnings.warn("iterations auto stops each slice at the noise its rays' variance gives "
                          "(recon.io.noise.line_integral_variance); without one, the fixed count runs",
                          UserWarning, stacklevel=2)
        if variance is not None and self.uses_variance:
            var = torch.as_tensor(np.asarray(variance, dtype=np.float32))
            if tuple(var.shape) != tuple(s.shape):
                raise FlytomoError(None, f"variance shape {tuple(var.shape)} does not match the sinograms' "
                                         f"{tuple(s.shape)}")
            var = torch.nn.functional.pad(var, (p, p), value=float("inf"))  # made-up columns: no weight
        counts = stopped is not None and getattr(self._fn, "counts_iterations", False)
        zooms = zoomed is not None and getattr(self._fn, "reports_zoom", False)
        with torch.no_grad():
            for z0 in range(0, s.shape[0], self.batch):
                chunk = extend_sinogram(s[z0:z0 + self.batch].to(self.device, torch.float32), p)
                kw: dict[str, Any] = {} if var is None else {"variance": var[z0:z0 + self.batch]}
                if counts:
                    kw["stopped"] = stopped
                if zooms:
                    kw["zoomed"] = zoomed
                out.append(self._fn(chunk, **kw)[..., m:m + n, m:m + n].float().cpu().numpy())
        return np.ascontiguousarray(np.concatenate(out, axis=0)) if out else np.zeros((0, n, n), np.float32)




def make_reconstructor(geometry: ScanGeometry, method: str, device: str = "cpu", **options: Any) -> Reconstructor:
    """Build once, call per chunk: see :class:`Reconstructor`."""
    return Reconstructor(geometry, method, device, **options)


#: reconstructors :func:`reconstruct` keeps for its next calls (their operators are the costly part)
_RECONSTRUCTORS: "OrderedDict[tuple, Reconstructor]" = OrderedDict()
RECONSTRUCT_CACHE = 2


def reconstruct(sino: np.ndarray | torch.Tensor, geometry: ScanGeometry, method: str, device: str = "cpu",
                **options: Any) -> np.ndarray:
    """Line integrals −log(I/I0) (attenuation per pixel along each ray) → slices, with ``method``
    ("fbp", "mlem", "mlem-flyscan", "rrdb"; its options: ``METHODS[method].defaults``).

    ``sino``: (z, n_angles, n_columns), or one sinogram (n_angles, n_columns), numpy or torch;
    returns (z, n, n) (or (n, n)) float32 numpy, attenuation per pixel, in astra's orientation
    (README, Conventions). The operators of the last RECONSTRUCT_CACHE geometries and methods are
    kept, so calls in a loop build them once (:func:`make_reconstructor` for a reconstructor of
    your own)."""
    key = (geometry.key(), method, str(device), repr(sorted(options.items())))
    rec = _RECONSTRUCTORS.get(key)
    if rec is None:
        rec = _RECONSTRUCTORS[key] = make_reconstructor(geometry, method, device, **options)
        while len(_RECONSTRUCTORS) > RECONSTRUCT_CACHE:
            _RECONSTRUCTORS.popitem(last=False)
    _RECONSTRUCTORS.move_to_end(key)
    one = tuple(sino.shape) == (geometry.n_angles, geometry.n_columns)
    out = rec(sino[None] if one else sino)
    return out[0] if one else out
