"""``open_scan``: open a scan file of any supported format, told by its contents."""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import h5py

from recon.errors import FlytomoError
from recon.io import dxchange, fxi, nxtomo
from recon.io._h5 import open_h5
from recon.io.scan import HDF5Scan, RawChunk, ScanReader

# (name, detect(file) -> bool, open(path, file) -> reader), tried in this order
FORMATS: tuple[tuple[str, Callable[[h5py.File], bool], Callable[..., HDF5Scan]], ...] = (
    (fxi.FORMAT, fxi.detect, fxi.open_fxi),
    (dxchange.FORMAT, dxchange.detect, dxchange.open_dxchange),
    (nxtomo.FORMAT, nxtomo.detect, nxtomo.open_nxtomo),
)

__all__ = ["ENTRY_SEPARATOR", "FORMATS", "RawChunk", "ScanReader", "open_scan", "recorded_start", "scan_entries",
           "scan_label", "split_scan_ref"]

#: ``FILE::ENTRY`` names one scan of a file that holds several (an NXtomo entry)
ENTRY_SEPARATOR = "::"


def split_scan_ref(ref: str | os.PathLike) -> tuple[Path, str | None]:
    """``"raw/series.nx::entry0003"`` → (Path("raw/series.nx"), "entry0003"); a plain path → (path, None)."""
    text = str(ref)
    if ENTRY_SEPARATOR in text and not Path(text).exists():
        file, entry = text.rsplit(ENTRY_SEPARATOR, 1)
        return Path(file), entry
    return Path(text), None


def scan_label(ref: str | os.PathLike) -> str:
    """A short name for a scan: the file's stem, with ``_ENTRY`` for one entry of a file."""
    file, entry = split_scan_ref(ref)
    return file.stem if entry is None else f"{file.stem}_{entry}"


def scan_entries(path: str | os.PathLike) -> list[str]:
    """The scans in a file: ``["FILE::entry0000", "FILE::entry0001", …]`` for an NXtomo file
    with several scan entries, else ``[FILE]`` (also for a file that cannot be read: opening it
    later says why)."""
    path = Path(path)
    try:
        with open_h5(path) as f:
            names = nxtomo.entry_names(f) if _format(f)[0] == nxtomo.FORMAT else []
    except (FlytomoError, OSError):
        return [str(path)]
    if len(names) < 2:
        return [str(path)]
    return [f"{path}{ENTRY_SEPARATOR}{name}" for name in names]


def _format(f: h5py.File) -> tuple[str | None, Callable[..., HDF5Scan] | None]:
    """(format name, opener) of the first of :data:`FORMATS` that recognises ``f``, else (None, None)."""
    for name, detect, open_format in FORMATS:
        if detect(f):
            return name, open_format
    return None, None


def broken_external_links(group: h5py.Group, folder: Path, depth: int = 4) -> list[tuple[str, str]]:
    """(path in the file, target file) of the HDF5 external links within ``depth`` levels of
    ``group`` whose target file is missing (relative targets are looked for in ``folder``)."""
    found = []
    for key in group:
        link = group.get(key, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            if not (folder / link.filename).exists():
                found.append((f"{group.name.rstrip('/')}/{key}", link.filename))
        elif isinstance(link, h5py.HardLink) and depth > 1 and isinstance(group.get(key), h5py.Group):
            found += broken_external_links(group[key], folder, depth - 1)
    return found


def open_scan(path: str | os.PathLike) -> ScanReader:
    """Open a scan file (FXI, Data Exchange or NXtomo, detected from its contents), or one
    entry of a file with several, ``FILE::ENTRY``.

    Reads only the small datasets (angles, image keys, metadata) and checks that frames,
    flats, darks and angles agree; frames are read later, by rows, with ``reader.read(z0, z1)``.
    Raises FlytomoError(path, problem) for every problem with the file.
    """
    path, entry = split_scan_ref(path)
    with open_h5(path) as f:
        name, open_format = _format(f)
        if open_format is None:
            broken = broken_external_links(f, path.parent)
            if broken:
                name, target = broken[0]
                raise FlytomoError(path, f"'{name}' links to {target}, which is missing (copy the data files "
                                         "beside the master file, as written)")
            raise FlytomoError(path, "format not recognised: expected FXI ('img_tomo'), Data Exchange "
                                     "('/exchange/data') or NXtomo (an NXentry with definition 'NXtomo')")
        if entry is None:
            return open_format(path, f)
        if name != nxtomo.FORMAT:
            raise FlytomoError(path, f"'{ENTRY_SEPARATOR}{entry}' names an NXtomo entry, but this "
                                     f"is a {name} file (one scan)")
        return nxtomo.open_nxtomo(path, f, entry)


def recorded_start(ref: str | os.PathLike) -> dict:
    """The start a scan file records (:func:`recon.io.metadata.scan_time_fields`: ``scan_time``,
    ``scan_time_naive``), read without its frames, for a scan that cannot be opened as one (frames
    missing, a beam lost), so that its row keeps its time; {} where none can be read."""
    from recon.io.metadata import lookup, scan_time_fields

    path, entry = split_scan_ref(ref)
    names = {m.FORMAT: m.START_TIME_NAMES for m in (fxi, dxchange, nxtomo)}
    try:
        with open_h5(path) as f:
            name = _format(f)[0]
            if name is None:
                return {}
            group = f
            if name == nxtomo.FORMAT:
                group = f[entry or nxtomo.entry_names(f)[0]]
            fields = scan_time_fields(lookup(group, *names[name]), path)
    except Exception:  # the file is at fault: its row says why, without a time
        return {}
    return fields if fields.get("scan_time") is not None else {}


def natural_order(path: str | Path) -> list:
    """Sort key that reads the numbers in a path as numbers: scan_9.h5 before scan_10.h5 (as
    ``ls -v``), where plain string order puts scan_10 … scan_19 before scan_2."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]
