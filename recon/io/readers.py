"""``open_scan``: open a scan file of any supported format, told by its contents."""
from __future__ import annotations

import os
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

__all__ = ["FORMATS", "RawChunk", "ScanReader", "open_scan"]


def open_scan(path: str | os.PathLike) -> ScanReader:
    """Open a scan file (FXI, Data Exchange or NXtomo, detected from its contents).

    Reads only the small datasets (angles, image keys, metadata) and checks that frames,
    flats, darks and angles agree; frames are read later, by rows, with ``reader.read(z0, z1)``.
    Raises FlytomoError(path, problem) for every problem with the file.
    """
    path = Path(path)
    with open_h5(path) as f:
        for _name, detect, open_format in FORMATS:
            if detect(f):
                return open_format(path, f)
    raise FlytomoError(path, "format not recognised: expected FXI ('img_tomo'), Data Exchange "
                             "('/exchange/data') or NXtomo (an NXentry with definition 'NXtomo')")
