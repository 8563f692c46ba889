"""Scan files in, volumes out: readers (FXI HDF5, Data Exchange, NXtomo) that read rows z0:z1
only, normalisation to line integrals, center finding, writers of simulated scans, and the
OME-Zarr volume store with provenance.

Projections are (angle, row, col); chunks of line integrals (z, angle, col); volumes
(z, y, x) or (t, z, y, x). Angles are degrees here (file units), exposure middles.
"""
from recon.io._h5 import release_read_bands
from recon.io.center import find_center
from recon.io.dxchange import write_dxchange
from recon.io.fxi import write_fxi
from recon.io.metadata import AssumptionWarning, parse_pixel_size_nm
from recon.io.nxtomo import write_nxtomo
from recon.io.omezarr import (check_in_progress, create_volume, discard, finalize, mark_rows_done, open_volume,
                              partial_path, rows_done, write_volume)
from recon.io.preprocess import DataRepairWarning, line_integrals
from recon.io.readers import FORMATS, open_scan
from recon.io.scan import HDF5Scan, RawChunk, ScanReader

__all__ = [
    "FORMATS", "AssumptionWarning", "DataRepairWarning", "HDF5Scan", "RawChunk", "ScanReader",
    "check_in_progress", "create_volume", "discard", "finalize", "find_center", "line_integrals", "mark_rows_done", "open_scan",
    "open_volume", "parse_pixel_size_nm", "partial_path", "release_read_bands", "rows_done", "write_dxchange",
    "write_fxi", "write_nxtomo", "write_volume",
]
