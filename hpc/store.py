"""The experiment store: one OME-Zarr group per experiment (docs/architecture.md).

Layout of ``STORE.zarr`` (zarr format 2, as OME-Zarr 0.4 asks)::

    0/                       (t, z, y, x) float32, attenuation per pixel,
                             chunks (1, rows_per_chunk, y, x); NaN where not yet written
    .zattrs                  multiscales (OME-Zarr 0.4) and ``flytomo`` (provenance, scans, status)
    .flytomo/manifest/       one marker per finished unit (see hpc.manifest)
    .flytomo/failed/         one marker per failed unit, with the reason
    .flytomo/lock            held by the run that is writing the store

The driver creates the store once, up front, with ``flytomo.status = "incomplete"``, and
marks it ``"complete"`` when every unit is done. Only the driver writes attributes; workers
write only their own chunks (no two units share a chunk) and then their manifest marker.
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import FlytomoError

ARRAY = "0"
INCOMPLETE, COMPLETE = "incomplete", "complete"
#: keys of ``flytomo.plan`` that must match for a run to resume an existing store
PLAN_KEYS = ("shape", "rows_per_chunk", "method", "options", "files", "center", "blur_angle_deg",
             "model",  # model: the sha256 of an rrdb run's network weights, else None
             "remove_outliers",  # the zinger threshold, else None (stores made before it: None)
             "remove_stripes",  # the stripe-removal method, else None (likewise)
             "air_columns",  # air levelling's outer columns, else None (likewise)
             "correct_jitter",  # jitter measured and undone (stores made before it: absent, read as false)
             "correct_tilt",  # the axis's tilt measured and undone (likewise)
             "pad_columns")  # 'auto' or the columns padded per side (stores made before it: absent, read as
                             # 'auto'; each scan's own pad, 0 for those, is in its geometry and kept on resume)
#: what a plan key absent from an older store's plan stands for
PLAN_DEFAULTS = {"correct_jitter": False, "correct_tilt": False, "pad_columns": "auto"}


@functools.lru_cache(maxsize=1)
def recon_code() -> str:
    """12 hex digits of the sha256 of the reconstruction code (every ``.py`` file of the
    ``recon`` package, by relative path): two runs of one version that differ here may
    reconstruct differently (an edited checkout, a patched install)."""
    import recon

    root = Path(recon.__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


#: what must be alike for the scans of one store to be reconstructed alike (:func:`versions`)
MADE_BY = ("flytomo", "recon_code", "torch", "numpy")


def made_by_change(existing: dict) -> str | None:
    """Words for a store begun by other code than this run's (:data:`MADE_BY` of its
    ``versions``; keys an older store lacks are not compared), else None."""
    old = existing.get("versions") if isinstance(existing.get("versions"), dict) else {}
    now = versions()
    diff = [f"{k} {old[k]} then, {now[k]} now" for k in MADE_BY if k in old and k in now and old[k] != now[k]]
    return "; ".join(diff) or None


def versions() -> dict[str, str]:
    """Versions of what made the store (provenance)."""
    import recon

    out = {"flytomo": recon.__version__, "recon_code": recon_code(), "python": platform.python_version(),
           "numpy": np.__version__}
    for mod in ("torch", "zarr", "dask", "distributed", "mpi4py", "h5py"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = str(getattr(m, "__version__", "?"))
    return out


def store_exists(path: Path) -> bool:
    return (Path(path) / ".zgroup").is_file() and (Path(path) / ARRAY / ".zarray").is_file()


def create_store(path: Path, shape: tuple[int, int, int, int], rows_per_chunk: int, attrs: dict,
                 time_step_s: float | None = None, pixel_size_nm: float | None = None) -> None:
    """Create the group and its array ``0`` (NaN-filled) with ``flytomo`` = ``attrs`` (status
    incomplete) and the OME-Zarr ``multiscales`` (voxels of ``pixel_size_nm`` where known)."""
    import zarr

    from recon.io.omezarr import multiscales

    path = Path(path)
    nt, nz, ny, nx = (int(s) for s in shape)
    try:
        g = zarr.open_group(str(path), mode="a", zarr_format=2)  # the folder holds .flytomo already
        g.create_array(ARRAY, shape=(nt, nz, ny, nx), chunks=(1, min(rows_per_chunk, nz), ny, nx),
                       dtype="float32", fill_value=float("nan"),
                       chunk_key_encoding={"name": "v2", "separator": "/"})
        g.attrs.update({"multiscales": multiscales(4, pixel_size_nm, path.name, time_step_s),
                        "flytomo": {**attrs, "status": INCOMPLETE}})
    except (OSError, ValueError) as err:
        raise FlytomoError(path, f"cannot create the experiment store ({err})") from None
    except Exception as err:  # zarr's ContainsGroupError and friends
        raise FlytomoError(path, f"cannot create the experiment store ({type(err).__name__}: {err})") from None


def grow_time(path: Path, n_scans: int, time_step_s: float | None) -> None:
    """Lengthen the store's time axis to ``n_scans`` time points (new ones NaN, the others
    untouched), its OME metadata's time axis ``time_step_s`` apart (None: a unit-less index):
    scans appended to an experiment still being collected."""
    import zarr

    from recon.io.omezarr import multiscales

    array = open_array(path)
    if n_scans < array.shape[0]:
        raise ValueError(f"cannot shrink {path} from {array.shape[0]} to {n_scans} time points")
    array.resize((n_scans, *array.shape[1:]))
    g = zarr.open_group(str(path), mode="r+")
    old = [dict(m) for m in g.attrs.get("multiscales") or []]
    if old:  # the time axis and its scale again, the space axes as they were
        new = multiscales(4, None, path.name, time_step_s)[0]
        step = new["datasets"][0]["coordinateTransformations"][0]["scale"][0]
        for m in old:
            m["axes"] = [new["axes"][0], *m.get("axes", [])[1:]]
            for d in m.get("datasets", []):
                for t in d.get("coordinateTransformations", []):
                    if t.get("type") == "scale" and len(t.get("scale", [])) == 4:
                        t["scale"][0] = step
        g.attrs["multiscales"] = old


def appended_scans(existing: dict, plan: dict) -> int:
    """How many scans ``plan`` adds at the end of the store's (``existing``'s ``plan``) with
    everything else unchanged: the store can grow to take them; 0 otherwise."""
    old = dict(existing.get("plan") or {})
    files, old_files = list(plan.get("files") or []), list(old.get("files") or [])
    shape, old_shape = list(plan.get("shape") or []), list(old.get("shape") or [])
    if (not old_files or len(files) <= len(old_files) or files[:len(old_files)] != old_files
            or shape[1:] != old_shape[1:] or set(plan_mismatch(existing, plan)) - {"files", "shape"}):
        return 0
    return len(files) - len(old_files)


def files_changed_text(existing: dict, plan: dict) -> str:
    """Which scan files the store has that the plan lacks, and the other way round (one line)."""
    old = list((existing.get("plan") or {}).get("files") or [])
    new = list(plan.get("files") or [])
    parts = [f"{len(names)} {what} ({', '.join(names[:3])}{', …' if len(names) > 3 else ''})"
             for what, names in (("gone", [f for f in old if f not in new]), ("new", [f for f in new if f not in old]))
             if names]
    return "; ".join(parts) or "the same files in another order"


def read_attrs(path: Path) -> dict:
    """The ``flytomo`` root attribute ({} when the store does not exist)."""
    import zarr

    if not store_exists(path):
        return {}
    try:
        return dict(zarr.open_group(str(path), mode="r").attrs.get("flytomo") or {})
    except Exception as err:
        raise FlytomoError(path, f"is not a readable experiment store ({type(err).__name__}: {err})") from None


#: a file a writer killed mid-write leaves: zarr's ``NAME.<32 hex>.partial`` (metadata and chunks),
#: the manifest's ``.NAME.<pid>.tmp`` (:func:`hpc.manifest._atomic_json`)
_STALE_TEMPORARY = re.compile(r".+\.[0-9a-f]{32}\.partial|\..+\.\d+\.tmp")


def remove_stale_temporaries(path: Path) -> int:
    """Remove the temporary files writers killed mid-write (SIGKILL, a node lost) left in the
    store at ``path``: its root, the volume array's folder and the manifest's (blind probe AF:
    they stayed for good). Only while this process holds the store's lock, before any writer of
    its own starts. Returns how many were removed."""
    from hpc.manifest import META

    removed = 0
    for folder in (path, path / ARRAY, path / META / "manifest", path / META / "failed"):
        try:
            entries = list(os.scandir(folder))
        except OSError:  # not there (a new store), or unreadable: the run finds that itself
            continue
        for entry in entries:
            if _STALE_TEMPORARY.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def update_attrs(path: Path, **changes: Any) -> dict:
    """Merge ``changes`` into the ``flytomo`` attribute (driver only) and return the result.
    FlytomoError where the store is gone (removed while a run wrote it)."""
    import zarr

    if not store_exists(path):
        raise FlytomoError(path, "the experiment store was removed while this run wrote it (by hand, or a scratch "
                                 "clean-up?): run again to begin it again")
    g = zarr.open_group(str(path), mode="r+")
    attrs = dict(g.attrs.get("flytomo") or {})
    attrs.update(changes)
    g.attrs["flytomo"] = attrs
    return attrs


def plan_mismatch(existing: dict, plan: dict) -> list[str]:
    """Keys of ``flytomo.plan`` in which an existing store differs from this run's plan. A
    method option that an older flytomo's plan lacks reads as that option's default (an option
    is added only with a default that keeps what came before: ``amp`` false is float32)."""
    old = dict(existing.get("plan") or {})
    if isinstance(old.get("options"), dict):
        old["options"] = {**_option_defaults(old.get("method")), **old["options"]}
    return [k for k in PLAN_KEYS
            if _norm(_same(k, old.get(k, PLAN_DEFAULTS.get(k)))) != _norm(_same(k, plan.get(k, PLAN_DEFAULTS.get(k))))]


def plan_mismatch_text(existing: dict, plan: dict) -> str:
    """What differs between an existing store's plan and this run's, with both values, one line:
    ``method: fbp in the store, mlem now; options.iterations: 50 in the store, 5 now``. Files
    are named by :func:`files_changed_text`, networks by their key only (checksums are long)."""
    old = dict(existing.get("plan") or {})
    if isinstance(old.get("options"), dict):
        old["options"] = {**_option_defaults(old.get("method")), **old["options"]}
    parts = []
    for key in plan_mismatch(existing, plan):
        a, b = old.get(key, PLAN_DEFAULTS.get(key)), plan.get(key, PLAN_DEFAULTS.get(key))
        if key == "files":
            parts.append(f"files: {files_changed_text(existing, plan)}")
        elif key == "model":
            parts.append("model: another network")
        elif isinstance(a, dict) and isinstance(b, dict):
            parts += [f"{key}.{k}: {_short(a.get(k))} in the store, {_short(b.get(k))} now"
                      for k in sorted(set(a) | set(b)) if _norm(a.get(k)) != _norm(b.get(k))]
        else:
            parts.append(f"{key}: {_short(_same(key, a))} in the store, {_short(_same(key, b))} now")
    return "; ".join(parts)


def _short(v: Any) -> str:
    text = ("unset" if v is None else str(v).lower() if isinstance(v, bool)
            else f"{v:g}" if isinstance(v, float) else str(v))
    return text if len(text) <= 48 else "..." + text[-45:]  # a path's end names it


#: plan values that mean the same as another (center null is found per scan, as 'auto' is)
PLAN_SAME = {"center": {None: "auto"}}


def _same(key: str, value: Any) -> Any:
    same = PLAN_SAME.get(key, {})
    return same.get(value, value) if isinstance(value, (str, type(None))) else value


def _option_defaults(method: Any) -> dict[str, Any]:
    """The default options of ``method`` (:data:`recon.methods.METHODS`); {} for an unknown one."""
    from recon.methods import METHODS

    spec = METHODS.get(method) if isinstance(method, str) else None
    return dict(spec.defaults) if spec else {}


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in sorted(v.items())}
    return v


def open_array(path: Path, mode: str = "r+"):
    import zarr

    return zarr.open_array(str(Path(path) / ARRAY), mode=mode)


def write_unit(path: Path, t: int, z0: int, volume: np.ndarray, array: Any = None, sync: bool = True) -> None:
    """Write rows z0:z0+len(volume) of time point ``t`` — exactly one chunk — and (``sync``) fsync it.

    zarr writes each chunk to a temporary file and renames it, so a killed writer leaves
    either the old chunk or the new one, never half of one.
    """
    arr = open_array(path) if array is None else array
    vol = np.asarray(volume, dtype=np.float32)
    zc = int(arr.chunks[1])
    if z0 % zc != 0 or vol.shape[0] > zc or (vol.shape[0] < zc and z0 + vol.shape[0] != arr.shape[1]):
        raise FlytomoError(path, f"unit rows {z0}:{z0 + vol.shape[0]} are not one chunk of {zc} rows")
    arr[int(t), z0:z0 + vol.shape[0]] = vol
    if sync:
        chunk = Path(path) / ARRAY / str(int(t)) / str(z0 // zc)
        for f in chunk.rglob("*") if chunk.is_dir() else [chunk]:
            _fsync(f)


def _fsync(f: Path) -> None:
    try:
        fd = os.open(f, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
