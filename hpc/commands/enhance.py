"""``flytomo enhance``: run a correction network on a reconstruction already made.

The input is a reconstruction, not a raw scan: a TIFF (one slice or a multi-page stack), a
folder or glob of single-slice TIFFs (as tomopy/dxchange write them), one PNG/JPEG/BMP slice
(8 or 16 bits, grey), a ``.npy`` array, or an OME-Zarr volume from ``flytomo recon``. Values are attenuation (or any unit proportional to
it, background ≈ 0); the network sees each slice scaled by its own 95th percentile, so the
unit does not matter. The output (``.zarr``, ``.tif``/``.tiff`` or ``.npy``) has the input's
shape and unit, and appears only when complete.

One network, on the one reconstruction given: the default ``rrdb`` method of ``flytomo
recon`` also averages in a second network on an FBP of the raw scan (``--rrdb-blend``), which
a finished reconstruction cannot supply; ``enhance`` of a modified-MLEM volume equals
``recon --method rrdb --rrdb-blend none``.
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from tqdm import tqdm

import recon
from hpc.commands import (Written, already_there, device_flag, exit_on_sigterm, made_by_this_command, use_threads,
                          word_or_number, zoom_choice_line, zoom_flag, zoom_summary)
from hpc.manifest import RunLock
from hpc.planner import file_fingerprint
from recon.device import amp_on
from recon.errors import FlytomoError
from recon.geometry import ScanGeometry
from recon.io import (check_in_progress, create_volume, discard, finalize, mark_rows_done, open_volume, partial_path,
                      rows_done)
from recon.io.omezarr import default_chunks
from recon.io._atomic import atomic_path, check_target, make_parent
from recon.air_level import slice_mass, zero_level
from recon.io.readers import natural_order
from recon.methods import fixed_zoom_choice, scan_zoom
from recon.weights import INPUT_KINDS, LoadedModel, channel_kinds, default_model_spec, load_model

TIFF_SUFFIXES = (".tif", ".tiff")
#: single-slice image files read with imageio (8- or 16-bit grey; grey stored as RGB(A) is taken)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
OUT_SUFFIXES = (".zarr", ".npy", *TIFF_SUFFIXES)
#: the smallest slice side the networks are run on (their receptive field is ~40 px)
MIN_SIDE = 16
#: what must equal a stopped enhance's (into a .zarr) for the slices it wrote to be kept: the
#: same input bytes, network and settings, slab by slab
RESUME_KEYS = ("method", "model", "input", "input_fingerprint", "input_kind", "self_ensemble", "amp", "zoom",
               "network_zoom", "zero_level", "source", "batch", "tile", "flytomo_version")


def input_fingerprint(spec: str) -> str | None:
    """A short digest of a reconstruction given to enhance: its files' fingerprints
    (:func:`hpc.planner.file_fingerprint`; every TIFF of a folder or glob), or an OME-Zarr
    store's metadata (a flytomo recon store records its own input's); None where unreadable."""
    import hashlib

    path = Path(spec)
    if path.is_dir() and (path.suffix == ".zarr" or (path / ".zgroup").exists()):
        parts = [(path / name).read_bytes() if (path / name).is_file() else b""
                 for name in (".zattrs", "0/.zarray", "0/.zattrs")]
        return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    try:
        files = _tiff_files(spec) or [path]
    except FlytomoError:
        return None
    prints = [file_fingerprint(f) for f in files]
    if any(p is None for p in prints):
        return None
    return hashlib.sha256(" ".join(f"{f.name}:{p}" for f, p in zip(files, prints)).encode()).hexdigest()[:16]


def _tiff_files(spec: str) -> list[Path] | None:
    """The TIFF files a folder or glob names, in natural name order (slice_9 before slice_10);
    None when ``spec`` is neither."""
    path = Path(spec)
    if path.is_dir() and path.suffix != ".zarr" and not (path / ".zgroup").exists():
        files = [p for p in sorted(path.iterdir(), key=natural_order) if p.suffix.lower() in TIFF_SUFFIXES]
    elif any(c in spec for c in "*?[") and not path.is_file():  # 'recon [A].tif' is a file's name
        files = [Path(p) for p in sorted(glob.glob(spec), key=natural_order) if Path(p).suffix.lower() in TIFF_SUFFIXES]
    else:
        return None
    if not files:
        raise FlytomoError(spec, "no .tif/.tiff files there")
    return files


def _read_tiff(path: str | Path) -> np.ndarray:
    """All the images of a TIFF file: its one series, or the series stacked as slices (z, y, x)
    where a writer stored each page apart (tifffile ``write`` once per slice); FlytomoError
    where those differ in shape."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series
        if len(series) <= 1:
            img = tif.asarray()
            page = tif.pages[0]
            # an RGB(A) image interleaved (y, x, c) is a picture: grey, or refused as colour (planes
            # (c, y, x) stay slices: tifffile writes a stack of 3 or 4 slices so by default)
            if page.photometric == tifffile.PHOTOMETRIC.RGB and img.ndim == 3:
                if page.planarconfig != tifffile.PLANARCONFIG.SEPARATE:
                    img = _grey_of_channels(img, path)
                elif not np.issubdtype(img.dtype, np.floating):  # float colour pictures are rare; float slices not
                    warnings.warn(f"{path}: stored as one RGB picture with separate colour planes, read as "
                                  f"{img.shape[0]} slices (as tifffile writes a stack of {img.shape[0]}); if it is a "
                                  "colour picture, export the reconstruction's grey values instead", stacklevel=2)
            return img
        images = [np.squeeze(s.asarray()) for s in series]
    shapes = {im.shape for im in images}
    if len(shapes) > 1 or images[0].ndim != 2:
        raise FlytomoError(path, f"holds {len(images)} images of shapes {', '.join(map(str, sorted(shapes)))}: "
                                 "give one slice or a stack of slices of one size")
    return np.stack(images)


#: nanometres in a unit a TIFF's ImageJ or OME metadata gives its pixel size in
NM_PER_UNIT = {"nm": 1.0, "nanometer": 1.0, "um": 1e3, "µm": 1e3, "\u03bcm": 1e3, "micron": 1e3, "microns": 1e3,
               "micrometer": 1e3, "mm": 1e6, "millimeter": 1e6}


def tiff_pixel_size_nm(path: str | Path) -> float | None:
    """The pixel size (nm) a TIFF records for Fiji (ImageJ: a unit and X resolution in pixels
    per unit) or in OME-XML (``PhysicalSizeX``, in µm unless a unit is given); None where it
    records neither (a bare TIFF's 72 dpi is no pixel size)."""
    import xml.etree.ElementTree as ET

    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                pixels = next((e for e in ET.fromstring(tif.ome_metadata).iter() if e.tag.endswith("Pixels")), None)
                if pixels is not None and pixels.get("PhysicalSizeX"):
                    unit = NM_PER_UNIT.get(pixels.get("PhysicalSizeXUnit", "µm").strip().lower())
                    return float(pixels.get("PhysicalSizeX")) * unit if unit else None
            if tif.is_imagej:
                unit = NM_PER_UNIT.get(str((tif.imagej_metadata or {}).get("unit", "")).strip().lower())
                tag = tif.pages[0].tags.get("XResolution")
                if unit and tag is not None and tag.value[0] > 0:
                    return unit * tag.value[1] / tag.value[0]
    except Exception:  # a size is a nicety: an unreadable record is no size (the image itself is read apart)
        return None
    return None


def _grey_image(path: Path) -> np.ndarray:
    """A PNG/JPEG/BMP slice as (y, x) in its own type. A grey image stored as RGB(A) (equal
    channels, to JPEG's rounding of 1 % of the range) gives its mean channel; colour is refused:
    a colour map of a reconstruction is not attenuation."""
    import imageio.v3 as iio
    try:
        img = np.asarray(iio.imread(path, plugin="pillow"))  # all three formats; pillow names what is wrong
    except Exception as err:  # imageio raises several types for a damaged or unknown file
        raise FlytomoError(path, f"not a readable PNG/JPEG/BMP image ({type(err).__name__}: {err})") from None
    if img.ndim == 3 and img.shape[-1] in (2, 3, 4):  # grey + alpha, RGB, RGBA
        img = _grey_of_channels(img, path)
    return img


def _grey_of_channels(img: np.ndarray, path: str | Path) -> np.ndarray:
    """(y, x) of an image (y, x, channels) stored as grey + alpha, RGB or RGBA: its mean channel
    where the channels agree (to JPEG's rounding of 1 % of the range); FlytomoError for colour."""
    colour = img[..., :3] if img.shape[-1] >= 3 else img[..., :1]
    mean = colour.mean(axis=-1)
    scale = float(np.abs(mean).max(initial=0.0))
    if np.issubdtype(img.dtype, np.integer):
        scale = max(scale, 1.0)  # a count of rounding, at least
    if np.abs(colour - mean[..., None]).max(initial=0.0) > 0.01 * scale:
        raise FlytomoError(path, "a colour image (its red, green and blue differ): a colour map is not "
                                 "attenuation; export the reconstruction's grey values (TIFF keeps them whole)")
    return np.rint(mean).astype(img.dtype) if np.issubdtype(img.dtype, np.integer) else mean


def read_reconstruction(spec: str) -> tuple[np.ndarray, dict, bool]:
    """(volume (z, y, x) (numpy, memory-mapped or zarr), attrs, single) of a reconstruction.

    ``attrs`` is the store's ``flytomo`` attribute for an OME-Zarr volume, ``{"metadata":
    {"pixel_size_nm": ...}}`` for a TIFF that records its pixel size, else ``{}``;
    ``single``: the file held one (y, x) slice.
    FlytomoError (naming the file) for a missing or unreadable file or a shape that is not
    a slice or a stack of slices.
    """
    files = _tiff_files(spec)
    path = Path(spec)
    attrs: dict = {}
    if files is not None:
        try:
            slices = [_read_tiff(f) for f in files]
        except FlytomoError:
            raise
        except Exception as err:  # tifffile raises several types for a damaged file
            raise FlytomoError(spec, f"not a readable TIFF stack ({type(err).__name__}: {err})") from None
        shapes = {s.shape for s in slices}
        if len(shapes) > 1:
            raise FlytomoError(spec, f"the TIFF files differ in shape ({', '.join(map(str, sorted(shapes)))})")
        volume = np.stack(slices)
        if (pixel := tiff_pixel_size_nm(files[0])) is not None:
            attrs = {"metadata": {"pixel_size_nm": pixel}}
    elif not path.exists():
        raise FlytomoError(path, "no such file")
    elif path.suffix == ".zarr" or (path / ".zgroup").exists():
        volume, attrs = open_volume(path)
        if volume.ndim == 4:
            raise FlytomoError(path, "an experiment store (t, z, y, x); run the experiment with "
                                     "method: rrdb, or enhance one scan's volume from flytomo recon")
    elif path.suffix.lower() in TIFF_SUFFIXES:
        try:
            volume = _read_tiff(path)
        except FlytomoError:
            raise
        except Exception as err:
            raise FlytomoError(path, f"not a readable TIFF ({type(err).__name__}: {err})") from None
        if (pixel := tiff_pixel_size_nm(path)) is not None:
            attrs = {"metadata": {"pixel_size_nm": pixel}}
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        volume = _grey_image(path)
    elif path.suffix == ".npy":
        try:
            volume = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise FlytomoError(path, f"not a readable .npy array ({err})") from None
    else:
        raise FlytomoError(path, "unknown kind of file; give a .tif/.tiff, a folder or glob of them, "
                                 "a .png/.jpg/.bmp slice, a .npy or a .zarr volume")
    single = volume.ndim == 2
    if single:
        volume = volume[None]
    if volume.ndim != 3:
        raise FlytomoError(spec, f"expected one slice (y, x) or a stack (z, y, x), got shape {volume.shape}")
    if min(volume.shape[1:]) < MIN_SIDE:
        raise FlytomoError(spec, f"slices of {volume.shape[1]}×{volume.shape[2]} pixels are too small "
                                 f"(at least {MIN_SIDE} each way; a colour image has shape (y, x, 3))")
    if not (np.issubdtype(volume.dtype, np.floating) or np.issubdtype(volume.dtype, np.integer)):
        raise FlytomoError(spec, f"values of type {volume.dtype} are not numbers")
    if np.issubdtype(volume.dtype, np.floating) and volume.dtype.itemsize > 4:  # the network runs in float32
        big = max(float(np.max(np.abs(np.nan_to_num(np.asarray(volume[z]), posinf=0.0, neginf=0.0))))
                  for z in range(volume.shape[0]))
        if big > float(np.finfo(np.float32).max):
            raise FlytomoError(spec, f"values up to {big:.3g} are beyond float32's range (3.4e38); rescale the "
                                     "reconstruction first")
    return volume, attrs, single


def choose_model(spec: str | None, kind: str | None, attrs: dict, where: str, device: str,
                 image_size: int | None = None) -> LoadedModel:
    """The network for a reconstruction of ``kind`` (given, else the store's method) with
    slices of ``image_size`` px: ``spec``, else the shipped one for that kind and size
    (:func:`recon.weights.default_model_spec`)."""
    method = attrs.get("method")
    if method == "rrdb":
        raise FlytomoError(where, "was already corrected by a network (method rrdb); enhance the "
                                  "volume of its first stage (flytomo recon --method mlem-flyscan or fbp)")
    if kind is not None and method in INPUT_KINDS and kind != method:
        raise FlytomoError(where, f"was reconstructed with {method} (its attributes say so), not {kind}: "
                                  f"drop --input-kind, or enhance a {kind} reconstruction")
    if kind is None and method in INPUT_KINDS:
        kind = method
    if kind is None and spec is None:
        raise FlytomoError(where, "say what reconstruction this is: --input-kind fbp or mlem-flyscan "
                                  "(or name a network with --model)")
    if spec is None:
        spec = default_model_spec(kind, image_size)
    loaded = load_model(spec, input_kind=kind, device=device)
    if len(channel_kinds(loaded.input_kind)) > 1:
        raise FlytomoError(loaded.path, f"a network on {loaded.input_kind} takes two reconstructions "
                                        "of one scan; use flytomo recon --method rrdb")
    return loaded


def parse_zero_level(text: str) -> float | None:
    """``--zero-level``: None for 'auto', else the (finite) number."""
    value = word_or_number(text, "--zero-level", ("auto",), float, np.isfinite, "'auto' or a number")
    return None if value == "auto" else value


def _network_input(slab, zero: float) -> tuple[np.ndarray, np.ndarray]:
    """Slices (z, y, x) of the input as the network takes them: float32, non-finite pixels at
    ``zero``, ``zero`` taken off. Returns (slices, where the input was not finite)."""
    part = np.asarray(slab, dtype=np.float32)
    bad = ~np.isfinite(part)
    if bad.any():
        part = np.where(bad, np.float32(zero), part)
    return (part - np.float32(zero) if zero else part), bad


def _choose_zoom(volume, loaded: LoadedModel, zoom: float | str, zero: float, size: int, mass: np.ndarray) -> Any:
    """The one network zoom (:class:`recon.infer.ZoomChoice`) ``zoom`` ``"auto"`` gives the whole
    volume, judged on the slices (z0, z1) where the sample is (``mass``: :func:`slice_mass`), as
    ``recon --method rrdb`` judges a scan, and those slices; (None, None) where there is nothing
    to choose (a number given, the seed's network)."""
    from recon.infer import AUTO_ZOOM_RULES, choose_zoom, zoom_sample_rows

    rule = loaded.resolve_zoom(zoom, size)
    if not isinstance(rule, str) or rule not in AUTO_ZOOM_RULES:
        return None, None
    a, b, held = zoom_sample_rows(int(volume.shape[0]), mass)
    return choose_zoom(torch.from_numpy(np.array(_network_input(volume[a:b], zero)[0][held])), rule), (a, b)


def _enhance(volume, loaded: LoadedModel, sink, args: argparse.Namespace, zero: float = 0.0,
             zoomed: list[float] | None = None, *, step: int | None = None,
             done: frozenset[tuple[int, int]] | set[tuple[int, int]] = frozenset(),
             written: Written | None = None, out: Path | None = None) -> None:
    """Write the network's output for every slice of ``volume`` into ``sink`` (same shape),
    ``step`` slices at a time (default ``--batch``); ``zero``: the input's value of zero
    attenuation, taken off before the network and put back; ``zoomed`` gets each slice's network
    zoom. Non-finite input pixels are zero attenuation to the network and NaN in the output.
    With ``out`` (a .zarr being written), slabs (z0, z1) in ``done`` (written by a stopped run)
    are skipped, each slab written is marked done, and ``written`` counts them."""
    step = step or args.batch
    n = int(volume.shape[0])
    slabs = [(a, min(n, a + step)) for a in range(0, n, step)]
    kept = sum(b - a for a, b in slabs if (a, b) in done)
    bar = tqdm(total=n, initial=kept, unit="slice", desc=f"enhance {Path(args.input).name}",
               disable=args.quiet or args.no_progress or None)
    n_bad = 0
    for z0, z1 in slabs:
        if (z0, z1) in done:
            continue
        part, bad = _network_input(volume[z0:z1], zero)
        n_bad += int(bad.sum())
        result = loaded.apply(part, zero_level=0.0, batch=args.batch, tile=args.tile,  # the level: taken off above
                              self_ensemble=args.self_ensemble, amp=args.amp, zoom=args.zoom, zoomed=zoomed)
        result = result + np.float32(zero) if zero else result
        sink[z0:z1] = np.where(bad, np.float32(np.nan), result) if bad.any() else result
        if out is not None:
            check_in_progress(out)  # still there: a slab written into a removed store would be lost
            mark_rows_done(out, z0, z1)
        if written is not None:
            written.done += z1 - z0
        bar.update(z1 - z0)
    bar.close()
    if n_bad:
        warnings.warn(f"{args.input}: {n_bad} NaN/infinite pixel(s) taken as zero attenuation by the network "
                      "and left NaN in the output (a mask kept)", stacklevel=1)


def scan_geometry_of(attrs: dict) -> ScanGeometry | None:
    """The scan geometry a ``flytomo recon`` store records (its attributes ``geometry``); None for
    other inputs (TIFF, .npy) or a record that does not read."""
    try:
        return ScanGeometry.from_dict(attrs["geometry"])
    except (KeyError, TypeError, ValueError, FlytomoError):
        return None


def record_path(out: Path) -> Path:
    """Where enhance writes what made a .npy output (a .npy holds an array only): ``OUT.npy.json``."""
    return out.with_name(out.name + ".json")


def run(args: argparse.Namespace) -> int:
    args.device = device_flag(args.device)
    use_threads(args.threads)
    out = Path(args.out)
    zarr_out = out.suffix.lower() == ".zarr"
    written = Written(smaller="--batch smaller loses less") if zarr_out else None
    exit_on_sigterm(written.words if written is not None
                    else "the half-written output is removed; run the same command again")
    if out.suffix.lower() not in OUT_SUFFIXES:
        raise FlytomoError(out, f"output must end in {', '.join(OUT_SUFFIXES)}")
    if out.exists() and not args.overwrite:
        if zarr_out and made_by_this_command(out, args.input, lambda: input_fingerprint(args.input),
                                             flytomo_version=recon.__version__):
            print(f"{out}: already complete, made by this same command from the same input with this flytomo; "
                  "nothing to do (--overwrite makes it again)")
            return 0
        raise FlytomoError(out, already_there(out))
    try:
        return _run(args, out, written)
    except KeyboardInterrupt:  # Ctrl-C: a .zarr keeps the slabs written, in its store in progress
        print(f"flytomo: interrupted: {written.words() if written is not None else 'nothing was written'}",
              file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, out: Path, written: Written | None) -> int:
    make_parent(out)
    check_target(out, args.overwrite, folder=written is not None, inputs=[args.input])
    if args.batch < 1:
        raise FlytomoError(None, "--batch must be ≥ 1")
    if args.tile is not None and args.tile < 1:
        raise FlytomoError(None, "--tile must be ≥ 1")
    given_zero = parse_zero_level(args.zero_level)
    args.zoom = zoom_flag(args.zoom, "--zoom")
    given_zoom = args.zoom != "auto"
    volume, src_attrs, single = read_reconstruction(args.input)
    if not any(np.isfinite(np.asarray(volume[z])).any() for z in range(volume.shape[0])):  # stops at the first
        raise FlytomoError(args.input, "no finite pixel (all NaN or infinite): nothing to enhance")
    size = min(volume.shape[1:])
    args.amp = amp_on(args.device, args.amp)
    loaded = choose_model(args.model, args.input_kind, src_attrs, args.input, args.device, size)
    geometry = scan_geometry_of(src_attrs)
    fixed = fixed_zoom_choice(loaded, geometry, size) if args.zoom == "auto" else None
    args.zoom = scan_zoom(args.zoom, geometry)
    mass = slice_mass(volume)  # read once: the zero level and the zoom are judged where the sample is
    zero = zero_level(volume, args.input, given_zero, mass)
    choice, judged = (fixed, None) if fixed else _choose_zoom(volume, loaded, args.zoom, zero, size, mass)
    if choice is not None:
        args.zoom = choice.zoom
        if not args.quiet:  # said before the slices, not after them (blind probe AC)
            where = f", judged on slices {judged[0]}:{judged[1]}" if judged and choice.slices else ""
            print(zoom_choice_line(choice, where, "--zoom"), file=sys.stderr, flush=True)
    attrs = {
        "method": "rrdb", "model": loaded.provenance(), "input": str(Path(args.input).resolve()),
        "input_fingerprint": input_fingerprint(args.input), "batch": args.batch, "tile": args.tile,
        "input_kind": loaded.input_kind, "self_ensemble": bool(args.self_ensemble), "amp": bool(args.amp),
        "zoom": loaded.resolve_zoom(args.zoom, size), "network_zoom": ({**choice.to_dict(), **({"rows": list(judged)} if judged else {})}
                                                    if choice is not None else None),
        "zero_level": zero,
        "source": src_attrs,
        "command": " ".join(sys.argv) if sys.argv else "", "flytomo_version": recon.__version__,
    }
    started = time.perf_counter()
    shape = tuple(int(s) for s in volume.shape)
    zoomed: list[float] = []
    kept = 0
    if written is not None:  # slab by slab into the store in progress: any size, and a stop keeps what is written
        pixel = (src_attrs.get("metadata") or {}).get("pixel_size_nm")
        # whole chunks of at most --batch slices (and 8 MB): a slab cut short by a kill is written again whole
        step = min(args.batch, default_chunks(shape)[0])
        # one run per output: a second at the same time would write the same slabs
        with RunLock(out, " ".join(sys.argv), path=out.parent / f".{out.name}.lock"):
            done = rows_done(out, attrs, RESUME_KEYS)
            kept = written.done = sum(b - a for a, b in done)
            written.total = shape[0]
            create_volume(out, shape, (step, *shape[1:]), attrs, overwrite=args.overwrite, pixel_size_nm=pixel,
                          resume=bool(done))
            if kept and not args.quiet:
                print(f"resuming: {kept} of {shape[0]} slices were written by an earlier run of this command",
                      file=sys.stderr)
            try:
                _enhance(volume, loaded, open_volume(partial_path(out), "r+")[0], args, zero, zoomed, step=step,
                         done=done, written=written, out=out)
                finalize(out, overwrite=args.overwrite)
            except (KeyboardInterrupt, SystemExit):  # Ctrl-C, SIGTERM (scancel, a time limit): the slabs
                raise  # written stay, for the same command to resume
            except BaseException:
                discard(out)
                raise
    else:
        result = np.empty(shape, np.float32)
        _enhance(volume, loaded, result, args, zero, zoomed)
        result = result[0] if single else result  # the input's shape
        # the record (networks, zoom, zero level) as JSON: ImageJ's Info, else the TIFF's description, or
        # beside a .npy (which holds an array only) as NAME.npy.json
        record = json.dumps({k: v for k, v in attrs.items() if k != "source"}
                            | {"source_method": src_attrs.get("method")}, default=str)
        with atomic_path(out, overwrite=args.overwrite, folder=False) as tmp:
            if out.suffix.lower() == ".npy":
                with open(tmp, "wb") as fh:
                    np.save(fh, result)
            else:
                pixel_nm = (src_attrs.get("metadata") or {}).get("pixel_size_nm")
                if pixel_nm:  # as Fiji reads it: µm per pixel, and the slice spacing of a stack
                    um = float(pixel_nm) / 1000.0
                    tifffile.imwrite(tmp, result, imagej=True, resolution=(1.0 / um, 1.0 / um),
                                     metadata={"unit": "um", "spacing": um, "axes": "ZYX" if result.ndim == 3 else "YX",
                                               "Info": record})
                else:
                    tifffile.imwrite(tmp, result, photometric="minisblack", metadata={"flytomo": json.loads(record)})
        if out.suffix.lower() == ".npy":
            with atomic_path(record_path(out), overwrite=True, folder=False) as tmp:
                tmp.write_text(json.dumps(json.loads(record), indent=1) + "\n")
    if not args.quiet:
        cast = "" if volume.dtype == np.float32 else f", float32 from {volume.dtype} input"  # the network's values
        earlier = f" ({kept} of its slices written by an earlier run)" if kept else ""
        print(f"wrote {out} ({shape[0]}×{shape[1]}×{shape[2]}{cast}, {loaded.label} on {loaded.input_kind}) "
              f"in {time.perf_counter() - started:.1f} s{earlier}", file=sys.stderr)
        if choice is None and zoomed and (any(z != 1 for z in zoomed) or given_zoom):
            print(zoom_summary(zoomed), file=sys.stderr)  # a zoom given (1 too: it was asked for)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("enhance", help="run a correction network on an existing reconstruction",
                       description="Run an RRDB correction network on a reconstruction already made: a "
                                   "TIFF slice or stack, a folder or glob of TIFF slices, a grey PNG/JPEG/BMP slice, a .npy array, or "
                                   "an OME-Zarr volume from flytomo recon. Values are attenuation (any unit "
                                   "proportional to it, background about 0). The output has the input's "
                                   "shape and unit, is float32 (an 8/16-bit input's values are not rounded back) "
                                   "and appears only when complete.")
    p.add_argument("input", help="reconstruction: .tif/.tiff (slice or stack), a folder or 'glob*.tif' of "
                                 "slices, a grey .png/.jpg/.bmp slice, .npy, or a .zarr volume from flytomo recon")
    p.add_argument("--out", required=True, help="output .zarr, .tif/.tiff or .npy (same shape and unit, float32)")
    p.add_argument("--input-kind", choices=("fbp", "mlem-flyscan"),
                   help="what the input is (picks the shipped network; a .zarr from flytomo recon says it)")
    p.add_argument("--model", help="PATH.safetensors or seed:PATH (the seed authors' network, FBP input); "
                                   "default: the shipped network for --input-kind")
    p.add_argument("--device", default=None, help="cpu (the default), cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch (default: all cores; fewer on a node others share)")
    p.add_argument("--batch", type=int, default=4, help="slices per forward pass")
    p.add_argument("--tile", type=int, help="tile size in pixels for large slices (exact: overlap ≥ the "
                                            "receptive radius)")
    p.add_argument("--self-ensemble", action="store_true", help="average the network over the 8 "
                   "rotations/flips of each slice (8x the time, about +0.1 dB)")
    p.add_argument("--zoom", default="auto", metavar="auto|F",
                   help="resample each slice by F (1-4) before the network and back after it; default auto "
                        "(one zoom for the volume; flytomo's networks: 1.5 where slices are under 300 px and "
                        "those holding the sample quiet, else 1; 1 for the seed's)")
    p.add_argument("--amp", action="store_true", help="the network in mixed precision (bfloat16 on the CPU, "
                   "float16 on CUDA): on CPUs with AVX-512-BF16/AMX; float32, with a warning, on others: emulated bfloat16 is 4-6x slower; not bit-identical")
    p.add_argument("--zero-level", default="auto", metavar="auto|VALUE",
                   help="the input's value of zero attenuation, taken off before the network and added "
                        "back (auto: found for 8/16-bit exports from their outer ring; 0 for floats, with a "
                        "warning where their outer ring is off 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (the summary stays), as run's")
    p.set_defaults(func=run)
