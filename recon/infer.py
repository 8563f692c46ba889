"""Apply a correction network to a volume, slice by slice: batched, tiled, any device.

Intensity normalisation (the ``normalization`` argument, recorded in every model card):

- ``"seed"``: the seed authors' tools — clip negatives to 0, divide each slice by the 95th
  percentile of its positive pixels, run the network, multiply back by the same number.
- ``"p95"``: as ``"seed"`` but without clipping negatives (the network sees FBP's
  negative undershoots).
- ``"none"``: the network sees attenuation per pixel as it is.

Tiling: a slice larger than ``tile`` is cut into ``tile × tile`` cores, each run with
``overlap`` pixels of context on every side (windows are shifted inward at the slice
edges, never padded), and only the cores are kept. With ``overlap`` at least the network's
receptive radius the result equals the untiled one up to float rounding; ``exact=True``
(the default) raises ``overlap`` to that radius.

Mixed precision (``amp=True``): the network under autocast, float16 on CUDA and bfloat16
on the CPU; normalisation, tiling and the output stay float32.

Self-ensemble (``self_ensemble=True``, as EDSR's "+" models): the network is run on the 8
rotations/flips of each slice and the outputs, mapped back, are averaged; the rotation axis
stays at the slice centre, so each is a fly-scan image of the same kind.

Slice edges: where a slice's material reaches its edge (a crop of a larger slice, a sample
wider than the field; a side of it whose median is above :data:`EDGE_MATERIAL` of the slice's
95th percentile), the normalized slice is mirrored outward by :data:`EDGE_PAD` px before the
network and cropped after, so the network's zero padding does not meet a step (a constant slice
gained a 10 % ripple within 20 px of its edges; crops of a phantom's interior had a 5 % larger
error in their outer 24 px; docs/benchmarks.md). Slices with air at their edges, as a full
field of view has, go through unchanged.

A slice with no value above zero (an empty slice at the top or bottom of a stack) has no scale
to normalise by and no sample to correct: it comes out as it went in (``"seed"`` and ``"p95"``).

Entry points: :func:`apply_model` (numpy volume in and out), :func:`run_network` (torch
tensors, stays on the device), :func:`network_slice_fn` (the ``rrdb`` method of
:mod:`recon.methods`: a first-stage reconstruction followed by the network).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recon.device import amp_on
from recon.errors import FlytomoError

__all__ = [
    "NORMALIZATIONS",
    "apply_model",
    "dihedral",
    "input_channels",
    "material_at_edges",
    "network_slice_fn",
    "normalize_slices",
    "normalize_tensor",
    "receptive_radius",
    "run_network",
]

NORMALIZATIONS = ("seed", "p95", "none")

#: default bound on pixels per forward pass (slices × window area)
MAX_PIXELS = 1 << 21
#: pixels mirrored outward where material reaches a slice's edge (removes the edge ripple; module doc)
EDGE_PAD = 16
#: a side of a slice holds material where its outer 2 px have a median above this fraction of
#: the slice's 95th percentile of |value| (FBP noise in air has a median near 0; outside the
#: reconstruction circle FBP reads ~0.09)
EDGE_MATERIAL = 0.25


#: ``zoom="auto"``: slices smaller than :data:`ZOOM_MAX_SIZE` px (their shorter side, ``size``)
#: whose noise (:func:`slice_noise`) is below a limit go through the network at
#: :data:`AUTO_ZOOM`, others at 1. The limit, by the network's input kind: modified MLEM
#: ZOOM_NOISE · (256 / size)^1.5, FBP :data:`ZOOM_NOISE_FBP`. The rrdb method also keeps zoom 1
#: for scans with fewer than :data:`ZOOM_MIN_SAMPLING` × π/2 × size projections per half turn.
#: Chosen on validation phantoms (128, 256 and 512 px, I0 200-50,000: +0.5 to +1.9 dB at 128-256
#: px, 360 angles; at 512 px, 120 angles, zooming lost 0.2-3 dB) and two blind probes' astra-made
#: particles (docs/benchmarks.md "Zoom before the network"). FBP: 0.18 after 48 astra-made FBP slices
#: at 192-256 px (session 38): between 0.18 and 0.2 zooming gained 0.31 dB but lost 0.098 SSIM on average
ZOOM_NOISE = 0.065
ZOOM_NOISE_FBP = 0.18
ZOOM_MIN_SAMPLING = 0.4
AUTO_ZOOM = 1.5
#: Not from 300 px up: at 320-380 px a blind probe's cathodes (I0 3,000) gained 0.2-0.9 dB zoomed but lost
#: 0.03-0.08 SSIM, their solid mottled (docs/benchmarks.md "One zoom per series")
ZOOM_MAX_SIZE = 300
#: what ``zoom="auto"`` becomes for a network (:meth:`recon.weights.LoadedModel.resolve_zoom`):
#: the rule for its primary input kind
AUTO_ZOOM_RULES = ("auto:mlem-flyscan", "auto:fbp")
#: the largest zoom accepted (4 × the pixels per side: 16 × the network time)
MAX_ZOOM = 4.0
#: slices in the middle of a scan that :func:`choose_zoom` judges its one zoom by
ZOOM_SAMPLE_ROWS = 8


def slice_noise(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W) normalized slices (1 ≈ the slice's 95th percentile) → (B,) noise: the robust
    spread (1.4826 × median absolute deviation) of each slice's difference from its 3×3 median,
    over its material (pixels above 0.2); NaN for a slice with under 64 such pixels."""
    b, h, w = x.shape
    med = torch.nn.functional.pad(x[:, None].float(), (1, 1, 1, 1), mode="replicate")
    med = med.unfold(2, 3, 1).unfold(3, 3, 1).reshape(b, h, w, 9).median(dim=-1).values
    hf = x.float() - med
    out = torch.full((b,), float("nan"), dtype=torch.float32, device=x.device)
    for i in range(b):
        r = hf[i][x[i] > 0.2]
        if r.numel() >= 64:
            out[i] = 1.4826 * (r - r.median()).abs().median()
    return out


def check_zoom(zoom: float) -> float:
    """``zoom`` as a float, or FlytomoError: a number from 1 to :data:`MAX_ZOOM`."""
    if isinstance(zoom, bool) or not isinstance(zoom, (int, float)) or not 1.0 <= float(zoom) <= MAX_ZOOM:
        raise FlytomoError(None, f"zoom must be 'auto' or a number from 1 to {MAX_ZOOM:g}, got {zoom!r}")
    return float(zoom)


def sampled_for_zoom(n_angles_per_half_turn: float, size: int) -> bool:
    """Whether a scan of ``n_angles_per_half_turn`` projections per 180° has enough of them for
    slices of ``size`` px to be zoomed (:data:`ZOOM_MIN_SAMPLING`): with fewer (120 for 256-px
    slices of images made elsewhere, 120 for 512 px) zooming lost 0.4-3 dB."""
    return n_angles_per_half_turn >= ZOOM_MIN_SAMPLING * np.pi / 2 * size


def zoom_noise_limit(size: int, kind: str = "mlem-flyscan") -> float:
    """The noise (:func:`slice_noise`) under which ``zoom="auto"`` zooms slices of ``size`` px
    of a network's primary input ``kind`` (:data:`ZOOM_NOISE`); 0 from :data:`ZOOM_MAX_SIZE` up."""
    if size >= ZOOM_MAX_SIZE:
        return 0.0
    return ZOOM_NOISE_FBP if kind == "fbp" else ZOOM_NOISE * (256 / size) ** 1.5


def _rule_kind(rule: str) -> str:
    return "fbp" if rule == "auto:fbp" else "mlem-flyscan"


def primary_noise(x: torch.Tensor) -> torch.Tensor:
    """:func:`slice_noise` of the primary channel of network inputs (B, H, W) or (B, C, H, W),
    each slice normalized as :func:`slice_zooms` reads it → (B,)."""
    primary = x if x.dim() == 3 else x[:, 0]
    return slice_noise(normalize_tensor(primary.float(), "p95")[0])


def auto_zoom(x: torch.Tensor, kind: str = "mlem-flyscan") -> list[float]:
    """The zoom ``"auto"`` picks for each slice of network inputs (B, H, W) or (B, C, H, W),
    judged on its primary channel (:func:`primary_noise`), of kind ``kind`` ("mlem-flyscan" or
    "fbp"; see :data:`ZOOM_NOISE`)."""
    limit = zoom_noise_limit(min(x.shape[-2:]), kind)
    if limit <= 0:
        return [1.0] * x.shape[0]
    return [AUTO_ZOOM if float(v) < limit else 1.0 for v in primary_noise(x)]  # NaN (no material): 1


@dataclass(frozen=True)
class ZoomChoice:
    """One zoom for a whole scan or series (:func:`choose_zoom`): ``zoom``, from the median
    ``noise`` of the sample slices that hold material (NaN: none did) against ``limit``, over
    ``slices`` of them."""

    zoom: float
    noise: float
    limit: float
    slices: int
    reason: str = ""  # where no noise was judged: why (recon.methods.fixed_zoom_choice)
    scans: int = 1  # scans judged (:func:`series_zoom_choice`)

    def to_dict(self) -> dict:
        """JSON-ready (NaN noise as None)."""
        return {"zoom": self.zoom, "noise": self.noise if self.noise == self.noise else None,
                "limit": self.limit, "slices": self.slices, **({"reason": self.reason} if self.reason else {}),
                **({"scans": self.scans} if self.scans != 1 else {})}

    def words(self) -> str:
        """E.g. ``"1.5 (noise 0.041 of the slice's 95th percentile, under 0.117, median of 8 slices)"``."""
        if self.reason:
            return f"{self.zoom:g} ({self.reason})"
        if self.slices == 0:
            return f"{self.zoom:g} (no slice with material to judge the noise by)"
        if self.limit <= 0:
            return f"{self.zoom:g} (slices of {ZOOM_MAX_SIZE} px and up are not zoomed)"
        rel = "under" if self.noise < self.limit else "not under"
        of = f"median of {self.slices} slices" if self.slices > 1 else "1 slice"
        if self.scans > 1:
            of = f"median of {self.scans} scans' medians, {self.slices} slices"
        return f"{self.zoom:g} (noise {self.noise:.3g} of the slice's 95th percentile, {rel} {self.limit:.3g}, {of})"


def choose_zoom(x: torch.Tensor, rule: str) -> ZoomChoice:
    """One zoom for every slice of a scan (or a series) from sample slices ``x`` of the network's
    input, (B, H, W) or (B, C, H, W), by the auto ``rule`` (one of :data:`AUTO_ZOOM_RULES`):
    :data:`AUTO_ZOOM` where the median noise of the slices that hold material is under
    :func:`zoom_noise_limit`, else 1. Zoom changes crack contrast (docs/benchmarks.md "One zoom
    per series"): one zoom keeps crack fractions comparable along z and from scan to scan, where
    a choice per slice can step between them."""
    if rule not in AUTO_ZOOM_RULES:
        raise FlytomoError(None, f"unknown zoom rule {rule!r}; known: {', '.join(AUTO_ZOOM_RULES)}")
    limit = zoom_noise_limit(min(x.shape[-2:]), _rule_kind(rule))
    noise = primary_noise(x)
    noise = noise[torch.isfinite(noise)]
    if noise.numel() == 0:
        return ZoomChoice(1.0, float("nan"), limit, 0)
    med = float(noise.median())  # the lower middle of an even count: ties to zooming
    return ZoomChoice(AUTO_ZOOM if med < limit else 1.0, med, limit, int(noise.numel()))


def series_zoom_choice(choices: list[ZoomChoice]) -> ZoomChoice:
    """One zoom for a series from its judged scans' :func:`choose_zoom` choices (of one size, so
    one limit): the median of their noises (of an even count the lower: ties to zooming), so one
    noisy scan (a warm-up scan at a tenth of the dose) does not set the zoom of all; a reason to
    stay at 1 (too few projections) holds for all."""
    if not choices:
        raise ValueError("no choices to combine")
    judged = [c for c in choices if c.slices and not c.reason]
    if any(c.reason for c in choices) or not judged:
        return next((c for c in choices if c.reason), choices[0])
    noise = sorted(c.noise for c in judged)[(len(judged) - 1) // 2]
    limit = judged[0].limit
    return ZoomChoice(AUTO_ZOOM if noise < limit else 1.0, noise, limit, sum(c.slices for c in judged), scans=len(judged))


def zoom_sample_rows(n_rows: int, mass: np.ndarray | None = None) -> tuple[int, int, np.ndarray]:
    """The rows a scan or volume of ``n_rows`` is judged by (:func:`choose_zoom`): (z0, z1, held),
    up to :data:`ZOOM_SAMPLE_ROWS` rows z0:z1 around the middle row of those holding the sample,
    and which of them hold it (bool, z1 − z0). Rows hold the sample where their ``mass`` (one
    value per row, e.g. :func:`recon.io.preprocess.row_mass`; smoothed over 3 rows, so a lone
    bright row does not count) is at least half the largest; without it (or with none above 0),
    every row does, and the middle rows are taken. A sample in the top rows is judged there, not
    on the air in the middle, and the air rows beside a thin sample do not vote (docs/benchmarks.md
    "Judged where the sample is")."""
    k = min(n_rows, ZOOM_SAMPLE_ROWS)
    held = np.ones(n_rows, dtype=bool)
    mid = n_rows // 2
    if mass is not None and len(mass) == n_rows:
        from scipy.ndimage import median_filter

        m = median_filter(np.nan_to_num(np.asarray(mass, dtype=np.float64), nan=0.0), size=3, mode="nearest")
        if m.max() > 0:
            held = m >= 0.5 * m.max()
            rows = np.flatnonzero(held)
            mid = int(rows[len(rows) // 2])  # a row of the sample, its middle one
    z0 = min(max(mid - k // 2, 0), n_rows - k)
    return z0, z0 + k, held[z0:z0 + k]


def slice_zooms(x: torch.Tensor, zoom: float | str | list[float]) -> list[float]:
    """The zoom of each slice of ``x`` (B, H, W) or (B, C, H, W): ``"auto"`` (or one of
    :data:`AUTO_ZOOM_RULES`) → :func:`auto_zoom` of its primary channel, a number → that number for every slice, a list
    (one per slice, e.g. another network's choice) → itself."""
    if isinstance(zoom, (list, tuple)):
        if len(zoom) != x.shape[0]:
            raise FlytomoError(None, f"{len(zoom)} zooms for {x.shape[0]} slices")
        return [check_zoom(z) for z in zoom]
    if zoom == "auto" or zoom in AUTO_ZOOM_RULES:
        return auto_zoom(x, _rule_kind(zoom))
    return [check_zoom(zoom)] * x.shape[0]


def material_at_edges(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W) slices → (B,) bool: whether any side's outer 2 px have a median above
    :data:`EDGE_MATERIAL` of the slice's 95th percentile of |value|."""
    flat = x.abs().flatten(1)[:, ::max(1, x[0].numel() // 65536)].float()  # a sample is enough for a percentile
    ref = torch.quantile(flat, 0.95, dim=1)
    sides = [x[:, :2, :], x[:, -2:, :], x[:, :, :2], x[:, :, -2:]]
    med = torch.stack([s.flatten(1).float().median(dim=1).values for s in sides], dim=1)
    return (med > EDGE_MATERIAL * ref[:, None]).any(dim=1) & (ref > 0)


def _mirrored_at_edges(forward: Callable[[torch.Tensor], torch.Tensor], norm: torch.Tensor,
                       edge: torch.Tensor) -> torch.Tensor:
    """``forward`` on normalized slices (B, C, H, W) → (B, H, W), the slices whose material
    reaches an edge (``edge``, (B,) bool: :func:`material_at_edges`, the same for every
    rotation or flip of a slice) mirrored outward by :data:`EDGE_PAD` px first and cropped after."""
    if not edge.any():
        return forward(norm)
    pad = min(EDGE_PAD, norm.shape[-2] - 1, norm.shape[-1] - 1)
    out = torch.empty((norm.shape[0], *norm.shape[-2:]), dtype=norm.dtype, device=norm.device)
    if not edge.all():
        out[~edge] = forward(norm[~edge])
    padded = torch.nn.functional.pad(norm[edge], (pad, pad, pad, pad), mode="reflect")
    out[edge] = forward(padded)[:, pad:-pad, pad:-pad]
    return out


def _check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise FlytomoError("normalization", f"unknown normalization {normalization!r}; "
                           f"known: {', '.join(NORMALIZATIONS)}")


def normalize_tensor(x: torch.Tensor, normalization: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale each slice of ``x`` (B, H, W), or (B, C, H, W) for a multi-channel input, for
    the network (the one definition).

    Returns ``(normalized, same shape as x; scale (B,) float32)`` on ``x``'s device; the
    network output times ``scale[:, None, None]`` is back in the input's unit. The scale is
    the 95th percentile (linear interpolation, as ``numpy.percentile``) of the positive
    pixels of the slice (of its first channel, which every channel is divided by); a slice
    without positive pixels gets 1.
    """
    _check_normalization(normalization)
    if x.dim() not in (3, 4):
        raise FlytomoError("volume", f"expected slices (B, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
    scale = torch.ones(x.shape[0], dtype=torch.float32, device=x.device)
    if normalization == "none":
        return x.clone(), scale
    if normalization == "seed":
        x = x.clamp_min(0)
    primary = x if x.dim() == 3 else x[:, 0]
    for i in range(x.shape[0]):
        pos = primary[i][primary[i] > 0].double()
        m = pos.numel()
        if m == 0:
            continue
        k = 0.95 * (m - 1)
        lo, frac = int(np.floor(k)), k - np.floor(k)
        vlo = torch.kthvalue(pos, lo + 1).values
        vhi = torch.kthvalue(pos, min(lo + 2, m)).values if frac > 0 else vlo
        p = float(vlo + (vhi - vlo) * frac)
        if p > 0 and np.isfinite(p):
            scale[i] = p
    return x / scale.view(-1, *[1] * (x.dim() - 1)).to(x.dtype), scale


def normalize_slices(volume: np.ndarray, normalization: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`normalize_tensor` for a numpy (z, y, x) or (z, C, y, x) volume → (normalized
    float32, scale (z,))."""
    arr = np.asarray(volume, dtype=np.float32)
    if not arr.flags.writeable:  # memory-mapped caches: torch wants a writable buffer
        arr = arr.copy()
    xn, scale = normalize_tensor(torch.from_numpy(arr), normalization)
    return xn.numpy(), scale.numpy()


def input_channels(model: nn.Module) -> int:
    """Input channels the network takes (its first convolution's), 1 for the usual
    single-reconstruction network."""
    cfg = getattr(model, "config", None)
    if isinstance(cfg, dict) and "in_nc" in cfg:
        return int(cfg["in_nc"])
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return int(first.in_channels) if first is not None else 1


def receptive_radius(model: nn.Module) -> int:
    """The model's receptive radius in pixels (``model.receptive_radius`` when it has one,
    else the sum of the conv kernels' half-widths, an upper bound for a same-size conv net)."""
    r = getattr(model, "receptive_radius", None)
    if r is not None:
        return int(r)
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            total += (m.kernel_size[0] - 1) // 2 * m.dilation[0]
    return total


def _windows(n: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """Split [0, n) into cores of ``tile``; each core gets a window of ``tile + 2 margin``
    (clipped to n) shifted inward at the edges. Returns (w0, w1, c0, c1) per core."""
    win = min(n, tile + 2 * margin)
    out = []
    for c0 in range(0, n, tile):
        c1 = min(n, c0 + tile)
        w0 = min(max(0, c0 - margin), n - win)
        out.append((w0, w0 + win, c0, c1))
    return out


def dihedral(x: torch.Tensor, k: int, inverse: bool = False) -> torch.Tensor:
    """The k-th (0–7) of the 8 rotations/flips of the last two axes of ``x``: rotation by
    k·90° (k mod 4), then, for k ≥ 4, a left-right flip; ``inverse`` undoes it. A square
    slice keeps its rotation centre at the same pixel, so the fly-scan's arc blur about it
    is the same blur in every one of them."""
    if k not in range(8):
        raise ValueError(f"k must be 0..7, got {k}")
    if inverse:
        y = x.flip(-1) if k >= 4 else x
        return torch.rot90(y, -(k % 4), dims=(-2, -1))
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return y.flip(-1) if k >= 4 else y


def _forward_windows(model: nn.Module, norm: torch.Tensor, *, tile: int | None, margin: int, batch: int,
                     amp: bool, layout: torch.memory_format, max_pixels: int) -> torch.Tensor:
    """The network on normalized slices (B, C, H, W) → (B, H, W) float32, whole or in exact
    tiles (cores of ``tile`` px with ``margin`` px of context), ``batch`` windows a pass."""
    dtype = next(model.parameters()).dtype
    nb, _, ny, nx = norm.shape
    out = torch.empty((nb, ny, nx), dtype=norm.dtype, device=norm.device)
    if tile is None and ny * nx > max_pixels:  # too big for one pass: exact tiles instead, as few as fit
        largest, side = max(64, int(np.sqrt(max_pixels)) - 2 * margin), max(ny, nx)
        tile = -(-side // -(-side // largest))  # equal cores: 2048 px → 2 × 1024, not 1386 + 662 in 1448-px windows
    if tile is None or (tile >= ny and tile >= nx):
        wins = [(0, ny, 0, ny, 0, nx, 0, nx)]
    else:
        wins = [(wy0, wy1, cy0, cy1, wx0, wx1, cx0, cx1)
                for wy0, wy1, cy0, cy1 in _windows(ny, tile, margin)
                for wx0, wx1, cx0, cx1 in _windows(nx, tile, margin)]
    # every window has the same size, so (slice, window) pairs batch together
    jobs = [(z, w) for z in range(nb) for w in wins]
    w0 = wins[0]
    batch = max(1, min(batch, max_pixels // ((w0[1] - w0[0]) * (w0[5] - w0[4]))))
    for j0 in range(0, len(jobs), batch):
        part = jobs[j0:j0 + batch]
        xb = torch.stack([norm[z, :, w[0]:w[1], w[4]:w[5]] for z, w in part]).to(dtype, memory_format=layout)
        with torch.autocast(device_type=norm.device.type, enabled=amp):
            yb = model(xb)
        yb = yb.float()[:, 0]
        for (z, w), yi in zip(part, yb):
            wy0, _, cy0, cy1, wx0, _, cx0, cx1 = w
            out[z, cy0:cy1, cx0:cx1] = yi[cy0 - wy0:cy1 - wy0, cx0 - wx0:cx1 - wx0]
    return out


def resample(x: torch.Tensor, zoom: float = 1.0, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Slices (B, C, H, W) resampled by ``zoom`` (or to ``size`` (h, w)), bicubic over pixel
    areas (``align_corners=False``), antialiased when shrinking; unchanged at zoom 1."""
    new = tuple(size) if size is not None else tuple(max(1, round(n * zoom)) for n in x.shape[-2:])
    if new == tuple(x.shape[-2:]):
        return x
    return torch.nn.functional.interpolate(x, size=new, mode="bicubic", align_corners=False,
                                           antialias=new[0] < x.shape[-2])


@torch.no_grad()
def run_network(
    model: nn.Module,
    x: torch.Tensor,
    *,
    normalization: str,
    batch: int = 8,
    tile: int | None = None,
    overlap: int = 32,
    exact: bool = True,
    amp: bool = False,
    max_pixels: int = MAX_PIXELS,
    self_ensemble: bool = False,
    zoom: float | str = 1.0,
    zoomed: list[float] | None = None,
) -> torch.Tensor:
    """The network on slices ``x`` (B, H, W), or (B, C, H, W) for a network of C input
    channels → (B, H, W) float32, on ``x``'s device.

    ``model`` must already be on that device; it is put in eval mode, and on the CPU its
    4-D weights are stored channels-last (NHWC; same values). Arguments as for
    :func:`apply_model`.
    """
    channels = input_channels(model)
    if x.dim() == 3 and channels == 1:
        x = x[:, None]
    if x.dim() != 4 or x.shape[1] != channels:
        want = "(B, H, W)" if channels == 1 else f"(B, {channels}, H, W)"
        raise FlytomoError("volume", f"expected slices {want} for this network, got shape {tuple(x.shape)}")
    if batch < 1:
        raise FlytomoError("batch", "must be ≥ 1")
    model.eval()
    # CPU: weights and inputs channels-last, oneDNN's NHWC kernels (1.4x faster; docs/benchmarks.md)
    layout = torch.channels_last if x.device.type == "cpu" else torch.preserve_format
    model.to(memory_format=layout)
    margin = max(int(overlap), receptive_radius(model)) if exact else int(overlap)
    if overlap < 0 or (tile is not None and tile < 1):
        raise FlytomoError("tile", "tile must be ≥ 1 and overlap ≥ 0")
    if tile is not None and tile < max(x.shape[-2:]) and (cost := ((tile + 2 * margin) / tile) ** 2) > 4:
        # blind probe AC: --tile 17 on a 256² slice took 23x the untiled time, unsaid
        warnings.warn(f"tile {tile} px: with the {margin} px the network needs around each tile, every slice costs "
                      f"~{cost:.0f}x its pixels; a tile of {4 * margin} px or more costs under 2.25x",
                      UserWarning, stacklevel=3)
    use_amp = x.device.type in ("cuda", "cpu") and amp_on(x.device, amp)  # CPU autocast: bfloat16, where fast

    def windows(xn: torch.Tensor) -> torch.Tensor:
        return _forward_windows(model, xn, tile=tile, margin=margin, batch=batch, amp=use_amp,
                                layout=layout, max_pixels=max_pixels)

    def at_zoom(xs: torch.Tensor, z: float) -> torch.Tensor:
        norm, scale = normalize_tensor(resample(xs, z), normalization)
        edge = material_at_edges(norm[:, 0])  # once: the self-ensemble's 8 views share it

        def forward(xn: torch.Tensor) -> torch.Tensor:
            return _mirrored_at_edges(windows, xn, edge)

        if not self_ensemble:
            out = forward(norm)
        else:  # the mean over the 8 rotations/flips, each mapped back (EDSR's self-ensemble)
            out = sum(dihedral(forward(dihedral(norm, k)), k, inverse=True) for k in range(8)) / 8
        return resample(out[:, None], size=tuple(xs.shape[-2:]))[:, 0] * scale[:, None, None]

    x = x.float()
    zooms = slice_zooms(x, zoom)
    if zoomed is not None:
        zoomed.extend(zooms)
    if len(set(zooms)) == 1:
        out = at_zoom(x, zooms[0])
    else:  # slices of one batch at different zooms: each group in one pass
        out = torch.empty((x.shape[0], *x.shape[-2:]), dtype=torch.float32, device=x.device)
        for z in sorted(set(zooms)):
            idx = torch.tensor([i for i, zi in enumerate(zooms) if zi == z], device=x.device)
            out[idx] = at_zoom(x[idx], z)
    if normalization != "none":  # nothing above zero (an empty slice of a stack): no scale, no sample, kept
        primary = x[:, 0].float()
        empty = ~(primary > 0).flatten(1).any(dim=1)
        out[empty] = primary[empty]
    return out


def apply_model(
    model: nn.Module,
    volume: np.ndarray,
    *,
    normalization: str,
    batch: int = 8,
    tile: int | None = None,
    overlap: int = 32,
    device: str | torch.device = "cpu",
    exact: bool = True,
    amp: bool = False,
    max_pixels: int = MAX_PIXELS,
    self_ensemble: bool = False,
    zoom: float | str = 1.0,
    zoomed: list[float] | None = None,
) -> np.ndarray:
    """Run ``model`` on every slice of ``volume``.

    Parameters
    ----------
    model : a same-size network, e.g. :class:`recon.rrdb.RRDBNet`. Put in eval mode and
        moved to ``device`` (it is left there).
    volume : (z, y, x) or (y, x) float, attenuation per pixel (an FBP or MLEM volume); for a
        network of C > 1 input channels (z, C, y, x) or (C, y, x), the channels in the order
        of its card's input kind (e.g. modified MLEM, then FBP).
    normalization : ``"seed"``, ``"p95"`` or ``"none"`` (see the module doc); must be what
        the model was trained with (its card's ``normalization``).
    batch : slices (or tiles) per forward pass; also slices moved to the device at a time.
    tile : core size in pixels of square tiles; ``None``: whole slices (tiles anyway for
        a slice over ``max_pixels``).
    overlap : context pixels around each tile core.
    device : torch device for the network ("cpu", "cuda", "cuda:1", …).
    exact : raise ``overlap`` to the network's receptive radius so tiled == untiled.
    amp : autocast: float16 on CUDA, bfloat16 on the CPU (fast only where the CPU has
        AVX-512-BF16 or AMX; docs/benchmarks.md); not bit-comparable with float32.
    max_pixels : pixels per forward pass at most (bounds memory: about 1.6 GB of activations
        per million pixels for nf=32); fewer slices or tiles go through at once.
    self_ensemble : average the network over the 8 rotations/flips of each slice, each mapped
        back (:func:`dihedral`): 8× the network time, +0.1 dB on the Table-1 protocol with the
        shipped models (docs/benchmarks.md).
    zoom : resample each slice by this factor (:func:`resample`, bicubic) before the network
        and back after it: the network then sees features ``zoom`` times as many pixels wide;
        ``"auto"``: :data:`AUTO_ZOOM` for slices of low noise for their size, else 1
        (:func:`auto_zoom`).
    zoomed : a list that gets the zoom each slice went through the network at.

    Returns
    -------
    (z, y, x) float32 (or (y, x) for a 2-D input), attenuation per pixel.
    """
    _check_normalization(normalization)
    arr = np.asarray(volume, dtype=np.float32)
    channels = input_channels(model)
    per_slice = 2 if channels == 1 else 3
    squeeze = arr.ndim == per_slice
    if squeeze:
        arr = arr[None]
    if arr.ndim != per_slice + 1 or (channels > 1 and arr.shape[1] != channels):
        want = "(z, y, x) or (y, x)" if channels == 1 else f"(z, {channels}, y, x) or ({channels}, y, x)"
        raise FlytomoError("volume", f"expected {want} for this network, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise FlytomoError("volume", "contains NaN or infinite values")
    if batch < 1:
        raise FlytomoError("batch", "must be ≥ 1")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FlytomoError("device", f"{device} asked for but CUDA is not available")
    model = model.to(device).eval()
    out = np.empty((arr.shape[0], *arr.shape[-2:]), np.float32)
    for z0 in range(0, arr.shape[0], batch):
        x = torch.from_numpy(np.array(arr[z0:z0 + batch])).to(device)  # copy: inputs may be read-only
        out[z0:z0 + batch] = run_network(model, x, normalization=normalization, batch=batch,
                                         tile=tile, overlap=overlap, exact=exact, amp=amp,
                                         max_pixels=max_pixels, self_ensemble=self_ensemble, zoom=zoom,
                                         zoomed=zoomed).cpu().numpy()
    return out[0] if squeeze else out


def network_slice_fn(
    stage1: Callable[[torch.Tensor], torch.Tensor],
    model,
    input_kind: str,
    device: str | torch.device = "cpu",
    *,
    tile: int | None = None,
    overlap: int = 32,
    batch: int = 8,
    amp: bool = False,
    self_ensemble: bool = False,
    zoom: float | str = 1.0,
    image_size: int | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """First-stage reconstruction followed by the network, for :mod:`recon.methods`.

    Parameters
    ----------
    stage1 : sinograms (B, n_angles, n_columns) → slices (B, n, n), the ``input_kind``
        reconstruction (FBP or modified MLEM), on ``device``; (B, C, n, n) for a
        multi-channel kind such as "mlem-flyscan+fbp".
    model : a weights spec for :func:`recon.weights.load_model` (path, ``"seed:PATH"`` or
        ``None`` for the shipped model) or an already loaded :class:`LoadedModel`. Loaded
        once, here; a model trained on another input kind is refused.
    input_kind : "fbp", "mlem-flyscan" or "mlem-flyscan+fbp".
    tile, overlap, batch, amp, self_ensemble, zoom : as for :func:`apply_model`.
    image_size : the slices' size in px, for ``zoom="auto"``
        (:meth:`recon.weights.LoadedModel.resolve_zoom`); None: not known.

    Returns a function sinograms (B, n_angles, n_columns) → corrected slices (B, n, n)
    float32 on ``device``, attenuation per pixel; its list argument ``zoomed`` gets the zoom each
    slice went through the network at.
    """
    from recon.weights import LoadedModel, load_model

    device = torch.device(device)
    if isinstance(model, LoadedModel):
        if model.input_kind != input_kind:
            raise FlytomoError(model.path, f"this model corrects {model.input_kind!r} "
                               f"reconstructions, not {input_kind!r}")
        loaded = model
        loaded.model.to(device).eval()
    else:
        loaded = load_model(model, input_kind=input_kind, device=str(device))
    net, normalization = loaded.model, loaded.normalization
    zoom = loaded.resolve_zoom(zoom, image_size)

    def network(first: torch.Tensor, zooms: float | str | list[float] = zoom,
                zoomed: list[float] | None = None) -> torch.Tensor:
        zoomed = [] if zoomed is None else zoomed
        start = len(zoomed)
        out = run_network(net, first.to(device), normalization=normalization, batch=batch, tile=tile,
                          overlap=overlap, amp=amp, self_ensemble=self_ensemble, zoom=zooms, zoomed=zoomed)
        loaded.check_slice_size(first.shape[-1], zoomed[start:])  # at the size each slice reached the network
        return out

    def run(sino: torch.Tensor, zooms: float | str | list[float] = zoom,
            zoomed: list[float] | None = None) -> torch.Tensor:
        return network(stage1(sino), zooms, zoomed)

    run.loaded = loaded  # provenance: the model card travels with the function
    run.first_stage, run.network, run.zoom = stage1, network, zoom  # the rrdb method's blend shares the zooms
    run.reports_zoom = True  # takes a list ``zoomed`` that gets each slice's zoom
    return run
