"""``flytomo recon``: one raw scan file → one OME-Zarr volume, in row chunks of bounded memory."""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from tqdm import tqdm

import recon
from hpc.commands import (Written, already_there, device_flag, exit_on_sigterm, made_by_this_command, mpi_ranks,
                          use_threads, word_or_number, zoom_choice_line, zoom_flag, zoom_summary)
from hpc.manifest import RunLock
from hpc.planner import file_fingerprint
from hpc.store import recon_code
from recon.device import amp_on
from recon.errors import NO_ROOM_ERRNOS, FlytomoError
from recon.geometry import CENTER_CHOICES, MAX_BLUR_ANGLE_DEG
from recon.io import (check_in_progress, create_volume, discard, finalize, mark_rows_done, open_scan, open_volume,
                      partial_path, rows_done)
from recon.io._atomic import check_target, make_parent
from recon.io.readers import split_scan_ref
from recon.io.alignment import estimate_jitter, estimate_tilt, read_line_integrals
from recon.io.scan_geometry import scan_geometry
from recon.io.preprocess import STRIPE_METHODS, Corrections
from recon.operators import operator_cache_bytes, projector_bytes
from recon.mlem import DEFAULT_ITERATIONS_FLYSCAN, MAX_ITERATIONS, MIN_ITERATIONS
from recon.methods import dose_warnings
from recon.methods import BLEND_WEIGHT, FLYSCAN_OPERATORS, METHODS, RRDB_INPUTS, make_reconstructor, uses_blur

#: rows processed at once by default: bounds memory (sinogram + volume + operators)
DEFAULT_CHUNK_ROWS = 32
#: what must equal a killed recon's for its written rows to be kept (the same input bytes and
#: the same reconstruction, chunk by chunk)
RESUME_KEYS = ("method", "options", "model", "geometry", "remove_outliers", "remove_stripes", "air_columns",
               "correct_jitter", "correct_tilt", "jitter", "tilt", "input", "input_fingerprint", "rows",
               "chunk_rows", "flytomo_version", "recon_code")


def parse_rows(text: str | None, n_rows: int, where: str) -> tuple[int, int]:
    """'A:B' (either side may be empty) → (z0, z1) within 0..n_rows, else FlytomoError."""
    if text is None:
        return 0, n_rows
    try:
        a, b = text.split(":")
        z0 = int(a) if a.strip() else 0
        z1 = int(b) if b.strip() else n_rows
    except ValueError:
        raise FlytomoError(where, f"--rows must look like A:B (e.g. 100:164), got {text!r}") from None
    if z0 >= z1:
        raise FlytomoError(where, f"--rows {text} selects no rows: A:B takes rows A to B-1, so A must be below B")
    if not 0 <= z0 < z1 <= n_rows:
        raise FlytomoError(where, f"rows {z0}:{z1} are outside the scan's rows 0:{n_rows}")
    return z0, z1


def parse_pad(text: str) -> int | str:
    """``--pad-columns``: 'auto' or a whole number ≥ 0."""
    return word_or_number(text, "--pad-columns", ("auto",), int, lambda v: v >= 0,
                          "'auto' or a number of columns ≥ 0")


def parse_center(text: str | None) -> float | str | None:
    """``--center``: None (not given), 'auto', 'middle' or a column number."""
    if text is None:
        return None
    return word_or_number(text, "--center", CENTER_CHOICES, float, lambda v: True,
                          "a column number, 'auto' or 'middle'")


_FLAG_OF = {"blend": "rrdb_blend", "blend_weight": "rrdb_blend_weight", "zoom": "rrdb_zoom"}  # option → its flag, where they differ


def method_options(args: argparse.Namespace) -> dict:
    """The options the user gave that the chosen method takes (others are refused by name)."""
    iterations = None if args.iterations is None else word_or_number(
        args.iterations, "--iterations", ("auto",), int, lambda v: v >= 1, "an integer ≥ 1 or 'auto'")
    given = {"iterations": iterations, "window": args.window, "init": args.init,
             "model": args.model, "rrdb_input": args.rrdb_input, "blend": args.rrdb_blend,
             "blend_weight": args.rrdb_blend_weight, "tile": args.tile, "zoom": zoom_flag(args.rrdb_zoom, "--rrdb-zoom"),
             "self_ensemble": args.self_ensemble or None, "amp": args.amp or None, "operator": args.operator}
    given = {k: v for k, v in given.items() if v is not None}
    allowed = METHODS[args.method].defaults if args.method in METHODS else {}
    wrong = sorted(set(given) - set(allowed))
    if wrong:
        flags = ", ".join("--" + _FLAG_OF.get(k, k).replace("_", "-") for k in wrong)
        raise FlytomoError(None, f"method {args.method} takes no {flags}")
    if given.get("amp"):  # recorded as it runs: float32 on a CPU without bfloat16 arithmetic
        given["amp"] = amp_on(args.device, True)
    return given


#: suffixes of files, never of the OME-Zarr store recon writes
FILE_SUFFIXES = (".tif", ".tiff", ".npy", ".npz", ".h5", ".hdf5", ".hdf", ".nxs", ".cxi", ".png", ".jpg",
                 ".jpeg", ".txt", ".csv", ".mrc", ".raw")


#: a kept projector at least this large is announced before it is built (several seconds)
BUILD_NOTE_BYTES = 10**9


def run(args: argparse.Namespace) -> int:
    args.device = device_flag(args.device)
    written = Written()
    exit_on_sigterm(written.words)
    if (n := mpi_ranks()) > 1:  # every copy would write the whole volume
        raise FlytomoError(None, f"started as {n} MPI ranks (mpirun/srun): recon is one process; run it once "
                                 "(to spread scans over ranks: flytomo run --executor mpi)")
    try:
        return _recon(args, written)
    except KeyboardInterrupt:  # Ctrl-C: the slices written stay in the store in progress
        print(f"flytomo: interrupted: {written.words()}", file=sys.stderr)
        return 130


def _recon(args: argparse.Namespace, written: Written) -> int:
    started = time.perf_counter()  # "wrote ... in": the whole command, axis and projector included
    use_threads(args.threads)
    out = Path(args.out)
    if args.method not in METHODS:
        raise FlytomoError(None, f"unknown method '{args.method}'; choose one of {', '.join(METHODS)}")
    options = method_options(args)
    if out.suffix.lower() in FILE_SUFFIXES:
        raise FlytomoError(out, "recon writes an OME-Zarr store (a folder), not a "
                                f"{out.suffix} file: give --out a name ending in .zarr")
    if out.exists() and not args.overwrite:
        if made_by_this_command(out, args.input, lambda: file_fingerprint(Path(args.input)), recon_code=recon_code()):
            print(f"{out}: already complete, made by this same command from the same file with this flytomo; "
                  "nothing to do (--overwrite makes it again)")
            return 0
        raise FlytomoError(out, already_there(out))
    make_parent(out)
    check_target(out, args.overwrite, folder=True, inputs=[split_scan_ref(args.input)[0]])
    if args.chunk_rows < 1:
        raise FlytomoError(None, "--chunk-rows must be ≥ 1")
    if args.remove_outliers is not None and not args.remove_outliers > 0:
        raise FlytomoError(None, "--remove-outliers must be a threshold > 0 (line-integral units), "
                                 f"got {args.remove_outliers:g}")
    if args.air_columns is not None and not args.air_columns >= 0:
        raise FlytomoError(None, f"--air-columns must be a number of columns ≥ 0 (0: off), got {args.air_columns}")
    if args.blur_angle is not None and not 0 <= args.blur_angle <= MAX_BLUR_ANGLE_DEG:
        raise FlytomoError(None, f"--blur-angle must be degrees of rotation during one exposure, 0 to "
                                 f"{MAX_BLUR_ANGLE_DEG:g}, got {args.blur_angle:g}")
    pad = parse_pad(args.pad_columns)
    try:
        corrections = Corrections(args.remove_outliers, args.remove_stripes, args.air_columns, args.correct_jitter,
                                  args.correct_tilt)
    except ValueError as err:
        raise FlytomoError(None, f"--remove-stripes: {err}") from None
    reader = open_scan(args.input)
    z0, z1 = parse_rows(args.rows, reader.shape[1], args.input)
    tilt = estimate_tilt(reader, corrections=corrections) if args.correct_tilt else None
    jitter = estimate_jitter(reader, corrections=corrections, rows=(z0, z1), tilt=tilt) if args.correct_jitter else None
    blur_matters = uses_blur(args.method, options)
    geometry = scan_geometry(reader, blur_angle_deg=args.blur_angle, center=parse_center(args.center), rows=(z0, z1),
                             blur_matters=blur_matters,
                             corrections=corrections, jitter=jitter, tilt=tilt, pad_columns=pad,
                             reverse_rotation=args.reverse_rotation)
    size = projector_bytes(geometry.angles.size, geometry.n_columns, geometry.image_size)
    if not args.quiet and BUILD_NOTE_BYTES <= size <= operator_cache_bytes():
        print(f"building the projector of {geometry.angles.size} angles x {geometry.n_columns} columns once, kept for "
              f"every chunk (~{size / 1e9:.1f} GB)", file=sys.stderr, flush=True)
    rec = make_reconstructor(geometry, args.method, args.device, batch=args.chunk_rows, **options)
    choice, judged = None, ""  # the rrdb method's one network zoom for the scan (zoom auto), where judged
    if rec.model is not None:
        from recon.methods import judge_scan_zoom

        choice, (a, b) = judge_scan_zoom(rec, reader, z0, z1, corrections=corrections, jitter=jitter, tilt=tilt)
        if choice is not None:
            rec = rec.with_zoom(choice.zoom)
            judged = f", judged on rows {a}:{b}" if choice.slices else ""
        elif rec.options.get("zoom") == "auto":  # a network that takes no zoom (the seed's): it ran at 1
            rec.options = {**rec.options, "zoom": 1.0}
    if choice is not None and not args.quiet:  # said before the slices, not after them (blind probe AC)
        print(zoom_choice_line(choice, judged, "--rrdb-zoom"), file=sys.stderr, flush=True)
    if rec.model is not None:  # the networks' training doses against this scan's flats
        from recon.io.noise import scan_photons
        from recon.weights import ModelDomainWarning

        for line in dose_warnings(args.method, rec.options, geometry.image_size,
                                  [scan_photons(reader, (z0, z1))])[0]:
            warnings.warn(line, ModelDomainWarning, stacklevel=1)
    n = geometry.image_size
    attrs = {
        "method": args.method, "options": rec.options, "model": rec.provenance(),
        "first_stage": rec.first_stage_options,
        "geometry": geometry.to_dict(), **corrections.to_dict(), "jitter": jitter.to_dict() if jitter else None,
        "tilt": tilt.to_dict() if tilt else None,
        "network_zoom": ({**choice.to_dict(), **({"rows": [a, b]} if judged else {})}
                         if choice is not None else None),
        "input": str(Path(args.input).resolve()), "input_fingerprint": file_fingerprint(Path(args.input)),
        "format": reader.format, "rows": [z0, z1], "chunk_rows": args.chunk_rows,
        "metadata": reader.metadata, "command": " ".join(sys.argv) if sys.argv else "",
        "flytomo_version": recon.__version__, "recon_code": recon_code(),
        "scans": [{"index": 0, "scan_id": reader.metadata.get("scan_id"), "file": str(args.input),
                   "start_time_s": reader.metadata.get("scan_time"), "geometry": geometry.to_dict()}],
    }
    # one run per output: a second (a resubmitted job while the first still runs) would resume
    # the same rows and both write them
    with RunLock(out, " ".join(sys.argv), path=out.parent / f".{out.name}.lock"):
        done = rows_done(out, attrs, RESUME_KEYS)  # what a killed run of this same command wrote
        ranges = [(a, min(z1, a + args.chunk_rows)) for a in range(z0, z1, args.chunk_rows)]
        kept = sum(b - a for a, b in ranges if (a - z0, b - z0) in done)
        # before the store in progress appears: a stop from here on names its rows
        written.done, written.total = kept, z1 - z0
        create_volume(out, (z1 - z0, n, n), (min(args.chunk_rows, z1 - z0), n, n), attrs, overwrite=args.overwrite,
                      pixel_size_nm=reader.metadata.get("pixel_size_nm"), first_row=z0, resume=bool(done))
        if kept and not args.quiet:
            print(f"resuming: {kept} of {z1 - z0} slices were written by an earlier run of this command",
                  file=sys.stderr)
        stops: list[tuple[int, bool]] = []  # (MLEM iterations, noise unknown) per slice run here
        zoomed: list[float] = []  # the rrdb method's network zoom per slice run here
        try:
            array, _ = open_volume(partial_path(out), "r+")
            bar = tqdm(total=z1 - z0, initial=kept, unit="slice", desc=f"{args.method} {Path(args.input).name}",
                       disable=args.quiet or args.no_progress or None)
            for a, b in ranges:
                if (a - z0, b - z0) in done:
                    continue
                if rec.uses_variance:  # iterations: auto, from each row's flats
                    sino, var = read_line_integrals(reader, a, b, corrections=corrections, jitter=jitter, tilt=tilt,
                                                    columns=False, noise=True)
                    counts: list[int] = []
                    array[a - z0:b - z0] = rec(sino, var, stopped=counts)
                    stops.extend(zip(counts, np.isnan(var[:, 0, 0]).tolist()))
                else:
                    array[a - z0:b - z0] = rec(read_line_integrals(reader, a, b, corrections=corrections,
                                                                   jitter=jitter, tilt=tilt, columns=False),
                                               zoomed=zoomed)
                check_in_progress(out)  # still there: a chunk written into a removed store would be lost
                mark_rows_done(out, a - z0, b - z0)
                written.done += b - a
                bar.update(b - a)
                if bar.disable and not (args.quiet or args.no_progress):  # a log file (Slurm, nohup): a line a chunk
                    print(f"rows {a}:{b} of {z0}:{z1} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr,
                          flush=True)
            bar.close()
            finalize(out, overwrite=args.overwrite)
        except (KeyboardInterrupt, SystemExit, MemoryError):  # Ctrl-C, SIGTERM (scancel, a time limit): the rows
            raise  # written stay, as they do where memory ran out (the command again resumes)
        except OSError as err:
            if err.errno not in NO_ROOM_ERRNOS:
                discard(out)
                raise
            # a full disk or quota: the rows written stay, for the same command to resume once there is room
            if not written.done:
                discard(out)
                raise FlytomoError(out, f"{err.strerror} while writing its first rows: nothing is kept; make room "
                                        "(df -h, quota) and run the same command again") from None
            raise FlytomoError(out, f"{err.strerror} while writing: {written.done} of {written.total} slices are "
                                    "written and kept; make room (df -h, quota) and run the same command again to "
                                    "write the rest") from None
        except BaseException:
            discard(out)
            raise
    seconds = time.perf_counter() - started
    if not args.quiet:
        blur = f", blur {geometry.blur_angle_deg:.3f}°" if blur_matters else ""
        print(f"wrote {out} ({z1 - z0}×{n}×{n}, {args.method}, center {geometry.center:.2f}{blur}) "
              f"in {seconds:.1f} s"
              + (f" ({kept} of its slices written by an earlier run)" if kept else "")
              + (f"; {geometry.pad_columns} columns padded per side" if geometry.pad_columns else "")
              + (f"; axis tilt {tilt.degrees:+.3f}° undone" if tilt else "")
              + (f"; jitter undone: {jitter.summary()}" if jitter else ""), file=sys.stderr)
        if stops:
            print(stop_summary(stops), file=sys.stderr)
        if choice is None and zoomed and (any(z != 1 for z in zoomed) or isinstance(rec.options.get("zoom"), float)):
            print(zoom_summary(zoomed), file=sys.stderr)  # a zoom given (1 too: it was asked for)
    return 0


def stop_summary(stops: list[tuple[int, bool]]) -> str:
    """One line on MLEM's ``iterations: auto``: (iterations, noise unknown) per slice."""
    known = [k for k, unknown in stops if not unknown]
    words = []
    if known:
        words.append(f"MLEM iterations auto: {min(known)}-{max(known)} (median {int(np.median(known))}) in "
                     f"{len(known)} slice(s)")
        capped = sum(k >= MAX_ITERATIONS for k in known)
        floor = sum(k <= MIN_ITERATIONS for k in known)
        if capped:
            words.append(f"{capped} reached the cap of {MAX_ITERATIONS} without fitting down to the noise "
                         "(a model missing some physics, or flats noisier than the projections)")
        if floor:
            words.append(f"{floor} stopped at the floor of {MIN_ITERATIONS}: the fit was within the noise "
                         "at once (little in the slice, or flats quieter than the projections: then compare a "
                         "fixed count)")
    if len(known) < len(stops):
        fixed = sorted({k for k, unknown in stops if unknown})
        words.append(f"{len(stops) - len(known)} slice(s) ran a fixed {'/'.join(map(str, fixed))}: their flats "
                     "cannot tell the noise (fewer than 2 frames, or frames without photon noise)")
    return "; ".join(words)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recon", help="reconstruct one raw scan file into an OME-Zarr volume",
                       description="Reconstruct a raw scan (FXI HDF5, DataExchange or NXtomo) into an "
                                   "OME-Zarr volume (z, y, x), attenuation per pixel.")
    p.add_argument("input", help="raw scan file (format detected from its contents)")
    p.add_argument("--out", required=True, help="output OME-Zarr store (e.g. scan.zarr)")
    p.add_argument("--method", default="mlem-flyscan", help=f"one of {', '.join(METHODS)} (default mlem-flyscan)")
    p.add_argument("--iterations", help="MLEM iterations, or 'auto': each slice stops where its data fit reaches "
                                        "the noise its flats measure (at most "
                                        f"{MAX_ITERATIONS}; {DEFAULT_ITERATIONS_FLYSCAN} where they cannot tell) "
                                        f"(default: {METHODS['mlem'].defaults['iterations']} mlem, "
                                        f"{METHODS['mlem-flyscan'].defaults['iterations']} mlem-flyscan; the rrdb "
                                        f"method's network input: {DEFAULT_ITERATIONS_FLYSCAN})")
    p.add_argument("--window", help="FBP filter window: ramp, shepp-logan, cosine, hamming, hann "
                                    f"(default: {METHODS['fbp'].defaults['window']})")
    p.add_argument("--operator", choices=FLYSCAN_OPERATORS, default=None,
                   help="mlem-flyscan's fly-scan model: fast, R·B (default), or subangle, the mean of R over "
                        "sub-angles (the seed's; exact; +0.1 to +0.5 dB on small slices, many photons or a "
                        "large blur, -0.1 dB on 256 px at I0 2000; 5-20x slower)")
    p.add_argument("--init", choices=("uniform", "fbp"), help="MLEM start: uniform or positive-clipped FBP "
                                                              f"(default: {METHODS['mlem'].defaults['init']})")
    p.add_argument("--blur-angle", type=float, help="blur angle Δθ in degrees (default: file, else the angle step)")
    p.add_argument("--center", help="rotation-axis column, 'auto' (found from the middle rows, or where they "
                   "are air from rows that show the sample) or 'middle' ((n-1)/2); default: auto (a centre "
                   "recorded in the file is not read: seldom right to the half pixel)")
    p.add_argument("--remove-outliers", type=float, metavar="T",
                   help="remove zingers: samples brighter than their 3x3 and their neighbouring frames' medians "
                        "by more than T in line integral (0.3: 35%% more counts); default off")
    p.add_argument("--remove-stripes", choices=STRIPE_METHODS, metavar="mean|sorting|all",
                   help="remove ring artifacts (stripes in each sinogram): 'mean', full stripes from the "
                        "columns' mean over angles (Boin & Haibel 2006); 'sorting' and 'all', Vo et al. "
                        "2018's methods by algotom; default off")
    p.add_argument("--air-columns", type=int, metavar="N",
                   help="level each projection row by its outer N columns per side, which must be air at "
                        "every angle (flats taken at another beam intensity, a flux that changes between "
                        "exposures); default off, with a hint where the outer columns look like a beam that "
                        "changed; 0: off, no hint")
    p.add_argument("--correct-jitter", action="store_true",
                   help="measure each projection's shift off the ideal rotation (a stage that wobbles between "
                        "exposures) from the projections' mass and undo it; one extra pass over the scan; the "
                        "sample must stay inside the field of view; default off")
    p.add_argument("--correct-tilt", action="store_true",
                   help="find the rotation axis's lean in the detector plane (its column in bands of rows) and "
                        "turn each projection upright; default off")
    p.add_argument("--pad-columns", default="auto", metavar="N|auto",
                   help="a sample wider than the field of view: continue each projection N columns past both "
                        "edges and reconstruct that much wider; default auto (from the edge columns' attenuation, "
                        "0 where they are air); 0: off")
    p.add_argument("--reverse-rotation", action="store_true",
                   help="the stage turns the other way than the recorded angles grow in flytomo's convention "
                        "(its volume comes out mirrored against another tool's): each angle θ is read as −θ")
    p.add_argument("--rows", help="rows A:B to reconstruct (default all)")
    p.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="rows read and reconstructed at once")
    p.add_argument("--device", default=None, help="cpu (the default), cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch (default: all cores; fewer on a node others share)")
    p.add_argument("--model", help="rrdb: PATH.safetensors or seed:PATH (default: the shipped model)")
    p.add_argument("--rrdb-input", choices=RRDB_INPUTS, help="rrdb: the reconstruction fed to the network (default: the one the model was trained on)")
    p.add_argument("--rrdb-blend", metavar="auto|none|PATH",
                   help="rrdb: a second network whose output is averaged in; default auto (the shipped FBP "
                        "network beside the shipped default one on slices of 180 px or more; none with --model)")
    p.add_argument("--rrdb-blend-weight", type=float, metavar="W",
                   help=f"rrdb: the second network's share of the mean, 0 < W < 1 (default {BLEND_WEIGHT:g})")
    p.add_argument("--tile", type=int, help="rrdb: tile size in pixels for large slices")
    p.add_argument("--rrdb-zoom", metavar="auto|F",
                   help="rrdb: resample each slice by F (1-4) before the network and back after it; default "
                        "auto: one zoom for the scan, 1.5 where its slices are under 300 px and its sample's rows quiet, "
                        "for flytomo's networks; else 1")
    p.add_argument("--self-ensemble", action="store_true", help="rrdb: average the network over the 8 "
                   "rotations/flips of each slice (8x the network time, about +0.1 dB)")
    p.add_argument("--amp", action="store_true", help="rrdb: the network in mixed precision (bfloat16 on the "
                   "CPU, float16 on CUDA): on CPUs with AVX-512-BF16/AMX; float32, with a warning, on others: emulated bfloat16 is 4-6x slower; not bit-identical")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (the summary stays), as run's")
    p.set_defaults(func=run)
