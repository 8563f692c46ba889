"""recon.io: scan readers and writers, normalisation, center finding, OME-Zarr volumes."""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import warnings

import h5py
import numpy as np
import pytest

import recon
from recon.errors import FlytomoError
from recon.io import (AssumptionWarning, DataRepairWarning, RawChunk, ScanReader, create_volume, discard, finalize, find_center,
                      line_integrals, open_scan, open_volume, parse_pixel_size_nm, write_dxchange, write_fxi,
                      write_nxtomo, write_volume)
from recon.io.omezarr import partial_path

WRITERS = {"fxi": write_fxi, "dxchange": write_dxchange, "nxtomo": write_nxtomo}


def _write(fmt, path, scan, **kw):
    return WRITERS[fmt](path, scan.tomo, scan.flats, scan.darks, scan.angles_deg, **kw)


def _leftovers(folder):
    return [n for n in os.listdir(folder) if ".partial" in n]


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", sorted(WRITERS))
@pytest.mark.parametrize("compression", [None, "gzip"])
def test_round_trip(tmp_path, small_scan, fmt, compression):
    path = _write(fmt, tmp_path / f"scan_{fmt}.h5", small_scan, compression=compression)
    reader = open_scan(path)
    assert isinstance(reader, ScanReader)
    assert reader.format == fmt and reader.path == path
    assert reader.shape == (32, 8, 48)
    assert reader.angles_deg.dtype == np.float64
    np.testing.assert_allclose(reader.angles_deg, small_scan.angles_deg)
    chunk = reader.read(0, 8)
    np.testing.assert_array_equal(chunk.tomo, small_scan.tomo)
    np.testing.assert_array_equal(chunk.flats, small_scan.flats)
    np.testing.assert_array_equal(chunk.darks, small_scan.darks)
    assert chunk.tomo.dtype == np.float32 and chunk.rows == (0, 8)
    assert _leftovers(tmp_path) == []
    again = pickle.loads(pickle.dumps(reader))  # readers travel to worker processes
    np.testing.assert_array_equal(again.read(3, 4).tomo, small_scan.tomo[:, 3:4])


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_hyperslab_read_equals_slice_of_full_read(tmp_path, small_scan, fmt):
    reader = open_scan(_write(fmt, tmp_path / "scan.h5", small_scan))
    full = reader.read(0, 8)
    for z0, z1 in [(0, 1), (3, 6), (7, 8)]:
        part = reader.read(z0, z1)
        assert part.rows == (z0, z1)
        for name in ("tomo", "flats", "darks"):
            np.testing.assert_array_equal(getattr(part, name), getattr(full, name)[:, z0:z1])


def _frame_chunked(path, scan, tomo=None, compression="gzip", virtual=False):
    """A Data Exchange file as a detector writes it: compressed, one chunk per whole frame;
    ``virtual``: the projections a virtual dataset over two detector files, as nxtomomill writes."""
    opts = {"compression": compression} if isinstance(compression, str) else dict(compression)
    tomo = scan.tomo if tomo is None else tomo
    with h5py.File(path, "w") as f:
        for name, data in (("data", tomo), ("data_white", scan.flats), ("data_dark", scan.darks)):
            if name == "data" and virtual:
                layout, half = h5py.VirtualLayout(shape=data.shape, dtype=data.dtype), data.shape[0] // 2
                for i, part in enumerate((data[:half], data[half:])):
                    with h5py.File(path.parent / f"frames_{i}.h5", "w") as g:
                        g.create_dataset("frames", data=part, chunks=(1, *data.shape[1:]), **opts)
                    layout[i * half:i * half + part.shape[0]] = h5py.VirtualSource(f"frames_{i}.h5", "frames",
                                                                                   shape=part.shape)
                f.create_virtual_dataset("exchange/data", layout)
            else:
                f.create_dataset(f"exchange/{name}", data=data, chunks=(1, *data.shape[1:]), **opts)
        f["exchange/theta"] = scan.angles_deg
    return path


@pytest.mark.parametrize("codec", ["Bitshuffle", "Blosc", "Zstd", "LZ4"])
def test_detector_compression_filters_are_read(tmp_path, small_scan, codec):
    """Eiger, LIMA and BLISS write frames with bitshuffle-LZ4, Blosc, Zstd or LZ4, filters
    h5py lacks; hdf5plugin, a dependency, decodes them."""
    import hdf5plugin

    counts = np.rint(small_scan.tomo).astype(np.uint16)  # detectors write integers
    scan = dataclasses.replace(small_scan, tomo=counts)
    path = _frame_chunked(tmp_path / f"{codec}.h5", scan, compression=getattr(hdf5plugin, codec)())
    assert np.array_equal(open_scan(path).read(0, 8).tomo, counts)


@pytest.mark.parametrize("band_mb,slab_reads,virtual", [("512", 3, False), ("0", 12, False), ("512", 3, True)])
def test_rows_of_frame_compressed_files_are_read_once_per_band(tmp_path, small_scan, monkeypatch, band_mb,
                                                               slab_reads, virtual):
    """Reading rows of whole-frame compressed chunks decompresses whole frames, so the rows
    from the first asked for up are kept (FLYTOMO_READ_BAND_MB of them; 0: none) and the
    next reads served from memory: 3 reads of the file (projections, flats, darks) for 4
    chunks of 2 rows, not 12, and the values of a direct read; the same through a virtual
    dataset over compressed detector files. A file written again is read again."""
    from recon.io import _h5

    monkeypatch.setenv("FLYTOMO_READ_BAND_MB", band_mb)
    path = _frame_chunked(tmp_path / "frames.h5", small_scan, virtual=virtual)
    slab, calls = _h5._slab, []
    monkeypatch.setattr(_h5, "_slab", lambda *a: calls.append(a[2:4]) or slab(*a))
    scan = open_scan(path)
    parts = [scan.read(z, z + 2) for z in range(0, 8, 2)]
    assert len(calls) == slab_reads
    for part, z in zip(parts, range(0, 8, 2)):
        assert part.tomo.dtype == np.float32 and np.array_equal(part.tomo, small_scan.tomo[:, z:z + 2])
        assert np.array_equal(part.flats, small_scan.flats[:, z:z + 2])
    _frame_chunked(path, small_scan, tomo=small_scan.tomo + 1, virtual=virtual)  # the same size, other values
    assert np.array_equal(open_scan(path).read(2, 4).tomo, small_scan.tomo[:, 2:4] + 1)


def test_stacks_are_chunked_by_rows(tmp_path, small_scan):
    with h5py.File(_write("fxi", tmp_path / "scan.h5", small_scan, compression="gzip"), "r") as f:
        assert f["img_tomo"].chunks == (32, 8, 48) and f["img_tomo"].compression == "gzip"


def test_corrupt_data_raises_on_read(tmp_path, small_scan):
    path = _write("dxchange", tmp_path / "scan.h5", small_scan, compression="gzip")
    with h5py.File(path, "r") as f:
        offset = f["exchange/data"].id.get_chunk_info(0).byte_offset
    data = bytearray(path.read_bytes())
    data[offset + 100 : offset + 400] = b"\x00" * 300
    path.write_bytes(bytes(data))
    reader = open_scan(path)
    with pytest.raises(FlytomoError, match=r"scan\.h5: cannot read rows 0:8 of dataset '/exchange/data'"):
        reader.read(0, 8)


def test_nxtomo_reads_only_the_requested_rows(tmp_path, small_scan, monkeypatch):
    """Frames are selected by image_key with row hyperslabs, never the whole stack."""
    reader = open_scan(_write("nxtomo", tmp_path / "scan.nxs", small_scan))
    keys = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        if self.ndim == 3:
            keys.append(key)
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    chunk = reader.read(2, 4)
    assert keys and all(isinstance(k, tuple) and k[1] == slice(2, 4) for k in keys)
    np.testing.assert_array_equal(chunk.tomo, small_scan.tomo[:, 2:4])
    np.testing.assert_array_equal(chunk.flats, small_scan.flats[:, 2:4])  # flats split before/after


def test_writer_accepts_a_scan_object(tmp_path, small_scan):
    small_scan.blur_angle_deg = 1.5
    path = write_fxi(tmp_path / "obj.h5", small_scan, scan_id=12, scan_time=3.5, energy_keV=9.1)
    reader = open_scan(path)
    assert reader.metadata == {"scan_id": 12, "scan_time": 3.5, "energy_keV": 9.1, "pixel_size_nm": 21.6,
                               "blur_angle_deg": 1.5}
    np.testing.assert_allclose(reader.angles_deg, small_scan.angles_deg)  # written as middles


def test_dxchange_and_nxtomo_metadata(tmp_path, small_scan):
    d = open_scan(_write("dxchange", tmp_path / "d.h5", small_scan, scan_id=3, scan_time=10.0, energy_keV=8.0,
                         pixel_size_nm=20.0))
    n = open_scan(_write("nxtomo", tmp_path / "n.nxs", small_scan, scan_id=4, scan_time=11.0, energy_keV=7.0,
                         pixel_size_nm=30.0, blur_angle_deg=2.0))
    assert d.metadata == {"scan_id": 3, "scan_time": 10.0, "energy_keV": 8.0, "pixel_size_nm": 20.0}
    assert n.metadata == {"scan_id": 4, "scan_time": 11.0, "energy_keV": 7.0, "pixel_size_nm": 30.0,
                          "blur_angle_deg": 2.0}


def test_the_blur_is_read_from_an_nxtomo_entry_and_warned_about_where_assumed(tmp_path, small_scan):
    """A blind probe: `blur_angle_deg` in the NXtomo entry (where NeXus puts a scan's
    metadata) was ignored for the root's; a scan with no blur recorded silently took the angle
    step; a blur larger than the step passed. For methods that model the blur, both now warn."""
    from recon.io.scan_geometry import scan_geometry

    path = _write("nxtomo", tmp_path / "n.nxs", small_scan)  # records no blur
    with h5py.File(path, "r+") as f:
        for key in ("blur_angle_deg", "angle_reference"):
            f.attrs.pop(key, None)
    reader = open_scan(path)
    assert "blur_angle_deg" not in reader.metadata
    with pytest.warns(AssumptionWarning, match=r"no blur angle recorded .* the step 5.62° between neighbouring "
                                               r"angles is taken, the turn of a continuous scan without dead time; give"):
        g = scan_geometry(reader, center="middle", blur_matters=True, pad_columns=0)
    assert g.blur_angle_deg == pytest.approx(5.625)
    from recon.io.scan_geometry import _check_blur  # probe O: an interlaced scan turns 2 steps per exposure

    interlaced = np.r_[np.arange(0.0, 180.0, 2.0), np.arange(1.0, 180.0, 2.0)]
    with pytest.warns(AssumptionWarning, match=r"step 1° between neighbouring angles .* not in turn order: the stage "
                                               r"turns 2° from one to the next"):
        _check_blur(None, interlaced, "x.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AssumptionWarning)  # fbp, mlem: the blur does not matter
        scan_geometry(reader, center="middle", blur_matters=False, pad_columns=0)
    with h5py.File(path, "r+") as f:
        entry = next(g for g in f.values() if isinstance(g, h5py.Group))
        entry.attrs["blur_angle_deg"] = 12.0
    reader = open_scan(path)
    assert reader.metadata["blur_angle_deg"] == 12.0
    with pytest.warns(AssumptionWarning, match=r"blur angle 12° is more than the angle step 5.62°"):
        scan_geometry(reader, center="middle", blur_matters=True, pad_columns=0)


# ---------------------------------------------------------------- FXI specifics


@pytest.mark.parametrize("value, expected", [
    ("21.6nm", 21.6), (b"21.6nm", 21.6), (21.6, 21.6), ("21.6 nm", 21.6), (np.bytes_(b"21.6nm"), 21.6),
    (np.array([b"21.6nm"]), 21.6), ("0.0216um", 21.6), ("0.0216 µm", 21.6), ("garbage", None), (None, None),
    ("21,6 nm", 21.6),  # a decimal comma (was: no pixel size)
])
def test_pixel_size_parsing(value, expected):
    got = parse_pixel_size_nm(value)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_a_bare_pixel_size_under_a_nanometre_is_micrometres_with_a_warning():
    """`Pixel Size 0.0216` with no unit was 0.0216 nm, silently: no X-ray microscope has
    sub-nanometre pixels, so it is read as micrometres, and said."""
    with pytest.warns(AssumptionWarning, match=r"0.0216 with no unit is below a nanometre: read as 0.0216 µm = 21.6 nm"):
        assert parse_pixel_size_nm(0.0216) == pytest.approx(21.6)
    assert parse_pixel_size_nm(0.5, "um") == pytest.approx(500.0)  # a unit given: no guess


def test_fxi_metadata_variants_and_average_fields(tmp_path, small_scan):
    path = _write("fxi", tmp_path / "fxi.h5", small_scan)
    with h5py.File(path, "r+") as f:
        del f["scan_time"], f["Pixel Size"], f["img_bkg"], f["img_dark"], f["img_dark_avg"]
        f["scan_time"] = np.array([1637000000.5, 1637000001.5])
        f["Pixel Size"] = np.bytes_(b"21.6nm")
        f["img_dark_avg"] = small_scan.darks[0]  # (row, col)
        f.attrs["exposure_s"] = 0.05
        f.attrs["rotation_speed_deg_s"] = 30.0
        f.attrs["angle_reference"] = "start"
    reader = open_scan(path)
    assert reader.metadata["scan_time"] == 1637000000.5
    assert reader.metadata["pixel_size_nm"] == pytest.approx(21.6)
    assert reader.metadata["blur_angle_deg"] == pytest.approx(1.5)
    np.testing.assert_allclose(reader.angles_deg, small_scan.angles_deg + 0.75)  # starts → middles
    chunk = reader.read(1, 3)
    assert chunk.flats.shape == (1, 2, 48) and chunk.darks.shape == (1, 2, 48)
    np.testing.assert_allclose(chunk.flats[0], small_scan.flats[0, 1:3], rtol=1e-6)


def test_exposure_starts_of_a_stage_turning_backwards_move_to_lower_angles(tmp_path, small_scan):
    """A blind probe: angles marked as exposure starts were shifted by +Δθ/2 whichever way the
    stage turned, so a scan turning backwards (0, -1, -2, ...) sat a whole blur width off
    (-1 dB FBP). The middles lie half a blur the way the stage turned."""
    path = _write("fxi", tmp_path / "fxi.h5", small_scan)
    with h5py.File(path, "r+") as f:
        del f["angle"]
        f["angle"] = -small_scan.angles_deg
        f.attrs["blur_angle_deg"] = 1.0
        f.attrs["angle_reference"] = "start"
    reader = open_scan(path)
    np.testing.assert_allclose(reader.angles_deg, -small_scan.angles_deg - 0.5)
    assert reader.metadata["angle_shift_deg"] == -0.5


def test_fxi_scan_time_as_text(tmp_path, small_scan):
    path = _write("fxi", tmp_path / "fxi.h5", small_scan)
    with h5py.File(path, "r+") as f:
        del f["scan_time"]
        f["scan_time"] = b"1970-01-01T00:01:40"
    assert open_scan(path).metadata["scan_time"] == 100.0


@pytest.mark.parametrize("value", [1714640400.25, 1714640400250, 1714640400250000, 1714640400250000000])
def test_scan_times_in_unix_milli_micro_or_nanoseconds_are_read_as_seconds(tmp_path, small_scan, value):
    """Blind probe R: a scan_time of 1772625907250 (Unix ms, as a detector's clock writes it) was
    read as seconds, refused against the log with the wrong remedy, and once extrapolated the
    whole run crashed at the table ("year 58142 is out of range"). Read as the log's are."""
    path = _write("fxi", tmp_path / "fxi.h5", small_scan)
    with h5py.File(path, "r+") as f:
        del f["scan_time"]
        f["scan_time"] = value
    assert open_scan(path).metadata["scan_time"] == pytest.approx(1714640400.25, abs=1e-3)


@pytest.mark.parametrize("text, expected", [
    ("2024-05-02T09:00:00", 1714640400.0), ("2024-05-02 09:00:00Z", 1714640400.0),
    ("May 02, 2024 09:00:00", 1714640400.0), ("2024/05/02 09:00:00", 1714640400.0),
    ("2024.05.02 09:00:00", 1714640400.0), ("Thu May  2 09:00:00 2024", 1714640400.0),
    ("02/05/2024 09:00", None),  # day or month first? not guessed
])
def test_start_dates_as_instruments_write_them(tmp_path, small_scan, text, expected):
    path = _write("fxi", tmp_path / "fxi.h5", small_scan)
    with h5py.File(path, "r+") as f:
        del f["scan_time"]
        f["scan_time"] = text.encode()
    if expected is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert open_scan(path).metadata["scan_time"] == expected
    else:
        with pytest.warns(UserWarning, match=r"fxi\.h5: start time '02/05/2024 09:00' is not a date flytomo reads"):
            assert open_scan(path).metadata["scan_time"] is None


# ---------------------------------------------------------------- normalisation


def test_line_integrals_of_known_attenuation(small_scan):
    chunk = RawChunk(small_scan.tomo, small_scan.flats, small_scan.darks, source="x.h5", z0=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = line_integrals(chunk)
    assert p.shape == (8, 32, 48) and p.dtype == np.float32
    np.testing.assert_allclose(p, small_scan.p.transpose(1, 0, 2), atol=2e-4)


def test_line_integrals_clamp_and_negative(small_scan):
    tomo = small_scan.tomo.copy()
    tomo[0, 0, 0] = small_scan.darks[0, 0, 0] - 5.0  # below dark: clamped, finite
    tomo[0, 0, 1] = small_scan.flats[0, 0, 1] * 1.01  # above flat: slightly negative, kept
    p = line_integrals(RawChunk(tomo, small_scan.flats, small_scan.darks), min_transmission=1e-3)
    assert p[0, 0, 0] == pytest.approx(-np.log(1e-3), rel=1e-6)
    assert -0.05 < p[0, 0, 1] < 0


def test_dead_pixel_and_nan_repaired_with_warning(small_scan):
    flats, tomo = small_scan.flats.copy(), small_scan.tomo.copy()
    flats[:, 2, 10] = small_scan.darks[0, 2, 10]  # dead detector pixel: flat == dark
    tomo[5, 4, 20] = np.nan
    tomo[6, 4, 21] = np.inf
    with pytest.warns(DataRepairWarning) as record:
        p = line_integrals(RawChunk(tomo, flats, small_scan.darks, source="x.h5"))
    assert [str(w.message) for w in record] == [
        "x.h5: dead detector pixels (flat ≤ dark, no finite flat or dark, at the detector's full scale in every "
        "frame, as in a module gap, or dark in every projection while lit in the flats) are repaired by "
        "interpolation from neighbouring columns",
        "x.h5: NaN/inf projection counts are repaired by interpolation from neighbouring columns"]
    assert np.all(np.isfinite(p))
    truth = small_scan.p.transpose(1, 0, 2)
    np.testing.assert_allclose(p[2, :, 10], 0.5 * (truth[2, :, 9] + truth[2, :, 11]), atol=1e-3)
    assert p[4, 5, 20] == pytest.approx(0.5 * (truth[4, 5, 19] + truth[4, 5, 21]), abs=1e-3)


@pytest.mark.parametrize("dtype, full", [(np.uint16, 65535), (np.uint32, 2**32 - 1), (np.uint16, 4095)])
def test_a_module_gap_at_full_scale_without_darks_is_repaired_not_a_ring(small_scan, dtype, full):
    """A blind probe: a photon-counting detector's module gap (columns at full scale in every flat
    and projection) and no darks read as transmission 1 (line integral 0 at every angle: a ring
    3-4x the sample's contrast, exit 0; the 16-bit file got a hint about saturated flats). Those
    pixels measured nothing: dead, repaired from their neighbours, no saturation hint. A column at
    full scale in the flats only (saturated there, the sample seen in the projections) is not."""
    flats = np.rint(small_scan.flats - small_scan.darks[:1]).astype(dtype)
    tomo = np.rint(small_scan.tomo - small_scan.darks[:1]).astype(dtype)
    darks = np.zeros((1, *flats.shape[1:]), dtype)  # as a reader gives "no darks": level 0
    flats[:, :, 20:22] = full
    tomo[:, :, 20:22] = full
    with pytest.warns(DataRepairWarning, match="as in a module gap") as record:
        p = line_integrals(RawChunk(tomo, flats, darks, source="x.h5"))
    assert not any("saturated flats" in str(w.message) for w in record)
    truth = small_scan.p.transpose(1, 0, 2)
    np.testing.assert_allclose(p[:, :, 20], truth[:, :, 19] + (truth[:, :, 22] - truth[:, :, 19]) / 3, atol=0.02)
    np.testing.assert_allclose(p[:, :, :19], truth[:, :, :19], atol=0.02)
    flats[:, :, 20:22] = flats[:, :, 19:20]
    tomo[:, :, 20:22] = tomo[:, :, 19:20]
    flats[:, :, 30] = full  # saturated in the flats only: a measurement (too low), kept, hinted at
    from recon.io.preprocess import DataHintWarning

    with pytest.warns(DataHintWarning, match="saturated flats"):
        p = line_integrals(RawChunk(tomo, flats, darks, source="x.h5"))
    kept = np.minimum(-np.log(tomo[:, :, 30] / float(full)), -np.log(1e-3)).T  # p is (z, angle, col)
    np.testing.assert_allclose(p[:, :, 30], kept, rtol=1e-4)
    from recon.io.preprocess import blind_pixels

    # a gap between unsaturated pixels, however bright the flat (a 12-bit camera's flats at 75 %
    # of 4095 were missed: a blind probe); a run reaching near-saturated pixels (open beam at full
    # scale at the edge) is air, not a gap; a whole row at full scale is named, no column repairs it
    for level, run, blind in ((0.2, slice(4, 6), True), (0.75, slice(4, 6), True), (0.95, slice(0, 3), False),
                              (0.6, slice(0, 3), True)):
        flats = np.full((2, 2, 10), level * full, np.float64)
        tomo = np.full((5, 2, 10), 0.5 * level * full, np.float64)
        flats[:, :, run] = tomo[:, :, run] = full
        flats[:, 1] = tomo[:, 1] = full  # row 1: all at full scale
        pixels, rows = blind_pixels(flats, tomo)
        assert pixels[0].tolist() == [blind if c in range(10)[run] else False for c in range(10)], (level, run)
        assert rows.tolist() == [False, True] and not pixels[1].any()


@pytest.mark.parametrize("break_it", ["flats_equal_dark", "flats_nan", "tomo_nan"])
def test_mostly_bad_chunk_is_refused(small_scan, break_it):
    flats, tomo = small_scan.flats.copy(), small_scan.tomo.copy()
    if break_it == "flats_equal_dark":
        flats[:] = small_scan.darks[0]
    elif break_it == "flats_nan":  # (whole rows NaN are dead rows, filled from their neighbours: not this)
        flats[:, :, :30] = np.nan
    else:
        tomo[:, :, :40] = np.nan
    with pytest.raises(FlytomoError, match=r"scan_07\.h5"):
        line_integrals(RawChunk(tomo, flats, small_scan.darks, source="scan_07.h5", z0=8))


def test_dropped_frames_are_replaced_by_their_neighbours(small_scan):
    tomo = small_scan.tomo.copy()
    tomo[5] = small_scan.darks[0]  # no beam for one exposure
    tomo[6] = 0.0                  # a detector read-out of zeros
    tomo[20] = np.nan              # a frame lost in writing
    with pytest.warns(DataRepairWarning, match=r"x\.h5: projection\(s\) 5-6, 20 look like dropped frames") as record:
        p = line_integrals(RawChunk(tomo, small_scan.flats, small_scan.darks, source="x.h5"))
    assert not any("photon-starved" in str(w.message) for w in record)  # the dark frames are no sample (probe N)
    truth = small_scan.p.transpose(1, 0, 2)
    np.testing.assert_allclose(p[:, 5], 0.5 * (truth[:, 4] + truth[:, 7]), atol=1e-4)
    np.testing.assert_allclose(p[:, 6], p[:, 5], atol=1e-6)
    np.testing.assert_allclose(p[:, 20], 0.5 * (truth[:, 19] + truth[:, 21]), atol=1e-4)
    keep = np.setdiff1d(np.arange(32), [5, 6, 20])
    np.testing.assert_allclose(p[:, keep], truth[:, keep], atol=1e-4)  # the other frames untouched


def test_a_scan_still_being_written_is_refused_not_repaired(small_scan):
    """A scan picked up half-written (its last frames still zeros, as a preallocated file): the
    running median took the block of empty frames for the scan, so it went through 'ok' with
    a particle of 841 voxels for 12,256 (a blind probe). Now refused, so that the unit fails and
    is done once the file is complete."""
    for value in (0.0, float(np.median(small_scan.darks))):  # zeros, or frames at the dark level
        tomo = small_scan.tomo.copy()
        tomo[16:] = value
        with pytest.raises(FlytomoError, match=r"x\.h5.*16 of 32 projections hold no light .* a scan still being "
                                               r"written, or the beam lost\?"):
            line_integrals(RawChunk(tomo, small_scan.flats, small_scan.darks, source="x.h5"))


def test_a_detector_row_dead_in_the_projections_is_filled_from_its_neighbours_not_the_scan_refused(small_scan):
    """Blind probe M: one detector row at the dark level in every projection (its flats lit) made
    the whole scan refused as 'projections hold no light ... beam lost?'; then (session 38) it was
    read as air, and the analysis counted its empty slice inside the particle as a crack (probe N:
    14.36 % for 8.81 %). Now it is filled from the rows beside it, named in a warning, and the
    other rows are as without it; a row with no measured row near is left empty, said; every row
    dark is still refused."""
    tomo = small_scan.tomo.copy()
    tomo[:, 3] = small_scan.darks[0, 3]
    with pytest.warns(DataRepairWarning, match=r"x\.h5: detector row\(s\) 3 hold no light in any projection while "
                                               r"their flats do .* interpolated from the rows beside them"):
        p = line_integrals(RawChunk(tomo, small_scan.flats, small_scan.darks, source="x.h5"))
    clean = line_integrals(RawChunk(small_scan.tomo, small_scan.flats, small_scan.darks, source="x.h5"))
    np.testing.assert_allclose(p[3], 0.5 * (clean[2] + clean[4]), rtol=1e-6)
    np.testing.assert_array_equal(np.delete(p, 3, axis=0), np.delete(clean, 3, axis=0))
    flats = small_scan.flats.copy()
    flats[:, 5] = small_scan.darks[0, 5]  # dead in the flats too: said as it is (it said "columns")
    flats[:, 7] = small_scan.darks[0, 7]  # the detector's last row: the one beside it
    with pytest.warns(DataRepairWarning, match=r"x\.h5: detector row\(s\) 5, 7 have no working pixel .* "
                                               r"interpolated"):
        p = line_integrals(RawChunk(small_scan.tomo, flats, small_scan.darks, source="x.h5"))
    np.testing.assert_allclose(p[5], 0.5 * (clean[4] + clean[6]), rtol=1e-6)
    np.testing.assert_array_equal(p[7], clean[6])
    tomo[:, 1:8] = small_scan.darks[0, 1:8]  # rows 1-7 dead: 4-7 have no measured row within 3
    with pytest.warns(DataRepairWarning, match=r"row\(s\) 4, 5, 6, 7 hold no light .* left empty \(no measured row "
                                               r"within 3"):
        p = line_integrals(RawChunk(tomo, small_scan.flats, small_scan.darks, source="x.h5"))
    assert np.all(p[4:] == 0) and np.all(p[3] == clean[0])
    tomo[:] = small_scan.darks[0]
    with pytest.raises(FlytomoError, match=r"x\.h5.*32 of 32 projections hold no light"):
        line_integrals(RawChunk(tomo, small_scan.flats, small_scan.darks, source="x.h5"))


class _Rows:
    """A scan in memory read by rows, as a ScanReader."""

    def __init__(self, tomo, flats, darks):
        self.tomo, self.flats, self.darks, self.shape = tomo, flats, darks, tomo.shape

    def read(self, z0: int, z1: int) -> RawChunk:
        return RawChunk(self.tomo[:, z0:z1], self.flats[:, z0:z1], self.darks[:, z0:z1], source="x.h5", z0=z0)


@pytest.mark.parametrize("zingers", [False, True])
def test_a_dead_row_at_a_chunk_edge_is_filled_as_in_a_read_of_the_whole_scan(zingers):
    """The fill of a dead row reads the rows beside it from the next chunk: every chunking gives
    the same rows, and a dead row in a sample whose attenuation is linear in z comes back exact."""
    from recon.io.alignment import read_line_integrals
    from recon.io.preprocess import Corrections

    rng = np.random.default_rng(3)
    n_angles, n_rows, n_cols = 24, 20, 32
    base = rng.uniform(0.2, 1.5, (n_angles, 1, n_cols))
    p = base * (1 + 0.05 * np.arange(n_rows))[None, :, None]
    flat = np.full((2, n_rows, n_cols), 1000.0, np.float32)
    dark = np.full((2, n_rows, n_cols), 100.0, np.float32)
    tomo = (900.0 * np.exp(-p) + 100.0).astype(np.float32)
    tomo[:, [7, 8, 13]] = 100.0  # dead after the flats: two beside one another, one at a chunk's edge
    flat[:, 15:18] = 100.0  # three dead in the flats too (blind probe P: a chunk of 5 holding them was refused)
    reader = _Rows(tomo, flat, dark)
    c = Corrections(remove_outliers=0.3) if zingers else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = read_line_integrals(reader, 0, n_rows, corrections=c)
        for step in (1, 3, 5, 7, 8, 13):
            parts = np.concatenate([read_line_integrals(reader, a, min(n_rows, a + step), corrections=c)
                                    for a in range(0, n_rows, step)])
            np.testing.assert_array_equal(parts, whole)
    if not zingers:  # (the zinger filter takes this random texture's dips for zingers)
        np.testing.assert_allclose(whole, p.transpose(1, 0, 2), rtol=2e-5)


def test_a_detector_column_dead_in_the_projections_is_repaired_as_a_dead_pixel(small_scan):
    """Blind probe N: a column at 0 counts in every projection, its flats lit, went through
    without a word (the axis found at it, FBP 0.33 dB). Now a dead pixel, interpolated from the
    neighbouring columns; a dense core (dark over 9 columns at every angle) is not one."""
    tomo = small_scan.tomo.copy()
    tomo[:, :, 20] = 0.0
    with pytest.warns(DataRepairWarning, match=r"x\.h5: dead detector pixels .* dark in every projection while lit in "
                                               r"the flats\) are repaired"):
        p = line_integrals(RawChunk(tomo, small_scan.flats, small_scan.darks, source="x.h5"))
    truth = small_scan.p.transpose(1, 0, 2)
    np.testing.assert_allclose(p[:, :, 20], 0.5 * (truth[:, :, 19] + truth[:, :, 21]), atol=1e-4)
    np.testing.assert_allclose(np.delete(p, 20, axis=2), np.delete(truth, 20, axis=2), atol=1e-4)
    dense = small_scan.tomo.copy()  # transmission 1e-4 through a core 9 columns wide, at every angle
    gain = (small_scan.flats[0] - small_scan.darks[0])[None, :, 16:25]
    dense[:, :, 16:25] = small_scan.darks[0][None, :, 16:25] + 1e-4 * gain
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = line_integrals(RawChunk(dense, small_scan.flats, small_scan.darks, source="x.h5"))
    np.testing.assert_allclose(q[:, :, 16:25], -np.log(1e-3), rtol=1e-5)  # clamped, not interpolated


def test_a_run_of_dim_frames_longer_than_the_window_is_found(small_scan):
    """A third blind probe: the last 12 of 90 frames at 1 % of the beam (stray light after a beam
    loss) passed the running median (it moves with a run over half its window) and the volume
    came out +72 % attenuation, rc 0. Against the row's median over the scan they are no
    projections: a run within a tenth is repaired, a longer one refused."""
    clean = np.concatenate([small_scan.tomo, small_scan.tomo])  # 64 frames
    dark = small_scan.darks.mean(axis=0)
    tomo = clean.copy()
    tomo[59:] = (tomo[59:] - dark) * 0.01 + dark  # 5 of 64 frames (window 9: more than half)
    with pytest.warns(DataRepairWarning, match=r"projection\(s\) 59-63 look like dropped frames"):
        line_integrals(RawChunk(tomo, small_scan.flats, small_scan.darks, source="x.h5"))
    tomo[52:] = (clean[52:] - dark) * 0.01 + dark  # 12 of 64: more than a tenth
    with pytest.raises(FlytomoError, match=r"12 of 64 projections are NaN or far off"):
        line_integrals(RawChunk(tomo, small_scan.flats, small_scan.darks, source="x.h5"))


def test_a_wide_plate_turning_edge_on_is_not_a_run_of_dropped_frames():
    """The run-of-dark-frames rule must not take a dense plate wider than the field for lost
    beam: near edge-on every ray crosses it (least attenuated rays 4x their usual), but it gets
    there gradually, where lost beam comes and goes in one step."""
    angles = np.deg2rad(np.arange(180.0))
    cols = np.arange(64) - 31.5
    # a plate 0.6 thick in line integral face-on, far wider than the field: t / |cos(theta)|,
    # capped where the path leaves the plate's length (edge-on: 0.7 % of the beam through it)
    path = np.minimum(0.6 / np.maximum(np.abs(np.cos(angles)), 1e-3), 5.0)
    p = np.broadcast_to(path[:, None, None] + 0.002 * np.abs(cols)[None, None, :], (180, 1, 64)).astype(np.float32)
    assert (np.percentile(p, 2, axis=2)[:, 0] > 4.1).sum() > 9  # the gross rule's candidates
    tomo = (1000.0 * np.exp(-p) + 100.0).astype(np.float32)
    flats, darks = np.full((2, 1, 64), 1100.0, np.float32), np.full((2, 1, 64), 100.0, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataRepairWarning)
        line_integrals(RawChunk(tomo, flats, darks))


def test_a_sample_wider_than_the_field_is_not_taken_for_dropped_frames():
    from tests.recon.conftest import disc_sinogram

    # 30 angles over 180°, a dense disc reaching 22 px past the detector: the mean line
    # integral swings 4.5..6.3 with the angle, by up to 0.18 between neighbours
    p = disc_sinogram(np.linspace(0, 180, 30, endpoint=False), 64, 31.5, [(24, 0, 30, 0.12), (-10, 15, 20, 0.05)])
    tomo = (1000.0 * np.exp(-p) + 100.0)[:, None, :].astype(np.float32)
    flats, darks = np.full((2, 1, 64), 1100.0, np.float32), np.full((2, 1, 64), 100.0, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataRepairWarning)
        out = line_integrals(RawChunk(tomo, flats, darks))
    np.testing.assert_allclose(out[0], np.minimum(p, -np.log(1e-3)), atol=1e-3)


@pytest.mark.parametrize("n_flats, n_darks", [(4, 3), (2, 2)])
def test_unlit_flats_and_darks_with_the_beam_on_are_left_out(small_scan, n_flats, n_darks):
    """A blank flat frame (zeros; one at the dark level) and a dark frame taken with the beam
    on are left out of the means, each named in one warning: the line integrals are the
    clean scan's. Two of a kind (the median cannot tell them apart): the brighter flat, the
    darker dark is the reference. Flats 3 % apart, as before and after a scan, all stay."""
    flats, darks = small_scan.flats[:n_flats].copy(), small_scan.darks[:n_darks].copy()
    flats[0] *= 1.03
    darks[0] = small_scan.flats[0] * 1.03  # the beam was on
    flats[-1] = 0.0  # the shutter was closed
    if n_flats > 2:
        flats[1] = small_scan.darks[0]
    with pytest.warns(DataRepairWarning) as record:
        p = line_integrals(RawChunk(small_scan.tomo, flats, darks, source="x.h5"))
    bad_flats = "1, 3 of 4" if n_flats > 2 else f"1 of 2"
    assert [str(w.message) for w in record] == [
        f"x.h5: flat frame(s) {bad_flats} look not lit (beam off or shutter closed?): left out of the mean flat",
        f"x.h5: dark frame(s) 0 of {n_darks} look taken with the beam on: left out of the mean dark"]
    good_flats = [0, 2] if n_flats > 2 else [0]
    clean = line_integrals(RawChunk(small_scan.tomo, flats[good_flats], darks[1:]))
    np.testing.assert_array_equal(p, clean)
    assert np.abs(p - small_scan.p.transpose(1, 0, 2)).max() < 0.04  # the kept flats are 1.5-3 % bright


@pytest.mark.parametrize("n_lit_darks, n_unlit_flats", [(3, 0), (2, 0), (0, 3), (3, 2)])
def test_bad_frames_are_found_where_they_are_most_of_their_kind(small_scan, n_lit_darks, n_unlit_flats):
    """3 of 5 darks with the beam on, 2 of 3, or 3 of 5 flats unlit: the median of a kind was then
    the bad level, the wrong frames were named and kept, and the volume came out 2-13x too bright
    (the probe's DataExchange scans). Now the dark and lit frames are told apart by the widest gap
    between their levels: the line integrals are the clean frames' ones."""
    rng = np.random.default_rng(1)
    n_darks = 5 if n_lit_darks != 2 else 3
    flats = np.stack([small_scan.flats[i % len(small_scan.flats)] * (1 + 0.01 * i) for i in range(5)])
    darks = np.stack([small_scan.darks[0] + rng.normal(0, 1, small_scan.darks[0].shape) for _ in range(n_darks)])
    darks = darks.astype(np.float32)
    clean = line_integrals(RawChunk(small_scan.tomo, flats.copy(), darks.copy()))
    lit, unlit = list(range(n_lit_darks)), list(range(5 - n_unlit_flats, 5))
    darks[lit] = flats[:n_lit_darks] * 0.98
    flats[unlit] = darks[-1]
    with pytest.warns(DataRepairWarning) as record:
        p = line_integrals(RawChunk(small_scan.tomo, flats, darks, source="x.h5"))
    said = " | ".join(str(w.message) for w in record)
    if lit:
        assert f"dark frame(s) {', '.join(map(str, lit))} of {n_darks} look taken with the beam on" in said
    if unlit:
        assert f"flat frame(s) {', '.join(map(str, unlit))} of 5 look not lit" in said
    good_flats = [i for i in range(5) if i not in unlit]
    good_darks = [i for i in range(n_darks) if i not in lit]
    kept = line_integrals(RawChunk(small_scan.tomo, flats[good_flats], darks[good_darks]))
    np.testing.assert_array_equal(p, kept)
    assert np.abs(p - clean).max() < 0.03


def test_one_glaring_frame_is_left_out_and_flats_of_two_currents_kept(small_scan):
    """A saturated dark among good ones (was refused with today's first gap rule), a saturated
    flat (was kept: the volume 2.2x too bright), flats at two beam currents (half of them were
    dropped as unlit by the gap rule): judged against the projections' own counts."""
    flats, darks = small_scan.flats.copy(), small_scan.darks.copy()
    clean = line_integrals(RawChunk(small_scan.tomo, flats, darks))
    hot = darks.copy()
    hot[-1] = 65535.0
    with pytest.warns(DataRepairWarning, match=r"dark frame\(s\) 2 of 3 look taken with the beam on"):
        p = line_integrals(RawChunk(small_scan.tomo, flats, hot, source="x.h5"))
    np.testing.assert_array_equal(p, line_integrals(RawChunk(small_scan.tomo, flats, darks[:2])))
    glaring = flats.copy()
    glaring[-1] = 65535.0
    with pytest.warns(DataRepairWarning, match=r"flat frame\(s\) 3 of 4 look over twice as bright"):
        p = line_integrals(RawChunk(small_scan.tomo, glaring, darks, source="x.h5"))
    np.testing.assert_array_equal(p, line_integrals(RawChunk(small_scan.tomo, flats[:3], darks)))
    dim = flats.copy()
    dim[2:] = darks.mean(axis=0) + 0.5 * (flats[2:] - darks.mean(axis=0))  # half the beam current
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataRepairWarning)
        p = line_integrals(RawChunk(small_scan.tomo, dim, darks))
    assert np.abs(p - clean).max() < 0.4  # all four kept: the mean flat is 3/4 of the clean one


def test_flats_of_a_drifting_beam_are_all_kept(small_scan):
    flats = small_scan.flats.copy()
    flats *= np.array([0.8, 0.95, 1.05, 1.2], np.float32)[:, None, None]  # ±20 %: kept, averaged
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataRepairWarning)
        p = line_integrals(RawChunk(small_scan.tomo, flats, small_scan.darks))
    np.testing.assert_allclose(p, small_scan.p.transpose(1, 0, 2), atol=2e-4)


def test_mostly_dropped_frames_are_refused(small_scan):
    tomo = small_scan.tomo.copy()
    tomo[2:30:6] = 0.0  # 5 of 32 frames
    with pytest.raises(FlytomoError, match=r"scan_07\.h5: rows 8:16: 5 of 32 projections"):
        line_integrals(RawChunk(tomo, small_scan.flats, small_scan.darks, source="scan_07.h5", z0=8))


def test_remove_outliers_takes_single_frame_specks_not_edges():
    from recon.io.preprocess import remove_outliers

    # a bright-edged square that moves one column per frame: an edge is below its 3x3
    # median, but its neighbouring frames vouch for it
    p = np.zeros((12, 10, 40))
    for a in range(12):
        p[a, 2:8, 10 + a:20 + a] = 1.5
    clean = p.copy()
    assert remove_outliers(p, 0.3) == 0 and np.array_equal(p, clean)
    p[5, 4, 14] -= 1.0   # a zinger inside the square
    p[7, 0, 35] -= 0.8   # and one in air at the top row
    assert remove_outliers(p, 0.3) == 2
    np.testing.assert_array_equal(p, clean)



def test_remove_stripes_takes_column_offsets_out_row_by_row():
    """A smooth sinogram (a disk seen from 90 angles) with 0.05 added to three single columns
    where the disk's chord changes by about 0.01 a column: each method takes those stripes down
    to under a third (a median over a slope is one column's step off), changes the clean
    sinogram by little, and gives each row the same result whatever rows come with it."""
    from recon.io.preprocess import mean_filter_size, remove_stripes, stripe_filter_size

    assert [stripe_filter_size(n) for n in (64, 128, 512, 1024, 2048)] == [3, 3, 5, 11, 21]
    assert [mean_filter_size(n) for n in (64, 128, 512, 1024, 2048)] == [5, 5, 11, 21, 41]
    cols = np.arange(96) - 47.5
    disk = 2 * np.sqrt(np.clip(40.0 ** 2 - cols ** 2, 0, None)) / 40.0  # chord lengths, ≤ 2
    clean = np.broadcast_to(disk, (90, 3, 96)).astype(np.float32).copy()
    clean += np.random.default_rng(0).normal(0, 0.02, clean.shape).astype(np.float32)
    offset = np.zeros(96, np.float32)
    offset[[40, 48, 56]] = 0.05
    striped = clean + offset
    out = striped.copy()
    remove_stripes(out, "sorting")
    residual = (out - clean).mean(axis=0)[:, [40, 48, 56]]
    assert np.abs(residual).max() < 0.015, residual
    untouched = clean.copy()
    remove_stripes(untouched, "sorting")
    assert np.abs(untouched - clean).mean() < 0.01
    first_row = striped[:, :1].copy()
    remove_stripes(first_row, "sorting")
    np.testing.assert_array_equal(first_row, out[:, :1])
    for method, tolerance in (("mean", 0.015), ("all", 0.02)):
        other = striped.copy()
        remove_stripes(other, method)
        assert np.abs((other - clean).mean(axis=0)[:, [40, 48, 56]]).max() < tolerance, method
    noise_free = np.broadcast_to(disk + offset, (90, 2, 96)).astype(np.float32).copy()
    remove_stripes(noise_free, "all")  # algotom refuses noise-free rows: sorting alone there
    assert np.isfinite(noise_free).all()
    with pytest.raises(ValueError, match="mean, sorting, all"):
        remove_stripes(striped, "fw")


def test_level_by_air_takes_out_flat_and_flux_offsets():
    """Projections of a disk that never reaches the outer 6 columns, read with flats 5 % too
    bright and a flux 3 % (s.d.) off from one exposure to the next: levelling by air gives
    back the clean line integrals to float precision; where the sample covers one side at
    some angles, the other side sets the level; air columns that are not air raise the
    returned spread, and line_integrals says so naming the file."""
    from recon.io.preprocess import AIR_OFFSET_SPREAD, Corrections, air_offset_hint, level_by_air

    cols = np.arange(64) - 31.5
    disk = np.sqrt(np.clip(20.0 ** 2 - cols ** 2, 0, None)) / 10.0
    clean = np.broadcast_to(disk, (40, 2, 64)).astype(np.float32).copy()
    flux = np.random.default_rng(1).normal(0, 0.03, 40)
    offset = (np.log(1.05) - np.log1p(flux)).astype(np.float32)[:, None, None]
    p = clean + offset
    spread = level_by_air(p, 6)
    np.testing.assert_allclose(p, clean, atol=1e-5)
    assert spread < AIR_OFFSET_SPREAD
    one_side = clean.copy()
    one_side[::4, :, :8] += 0.5  # the sample reaches the left edge at every fourth angle
    levelled = one_side + offset
    level_by_air(levelled, 6)
    np.testing.assert_allclose(levelled, one_side, atol=1e-5)
    wide = np.broadcast_to(np.sqrt(np.clip(40.0 ** 2 - cols ** 2, 0, None)) / 10.0, (40, 2, 64)).copy()
    wide[::2] *= 0.5  # an oblong sample wider than the field: its edges change with the angle
    assert level_by_air(wide.astype(np.float32), 6) > AIR_OFFSET_SPREAD
    hint = air_offset_hint(clean + np.float32(np.log(1.05)))  # flats 5 % too bright, no flux change
    assert hint is not None and "outer 4 detector columns read more attenuation than air" in hint
    assert "--air-columns 4" in hint
    assert air_offset_hint(clean - np.float32(0.05)) is not None
    assert air_offset_hint(clean) is None and air_offset_hint(wide.astype(np.float32)) is None
    # a round sample 1.25x the field (a blind probe: it got the hint, whose --air-columns would
    # take its edges' attenuation off every ray): rising inward, not an offset
    round_wide = np.broadcast_to(np.sqrt(np.clip(40.0 ** 2 - cols ** 2, 0, None)) / 40.0, (40, 2, 64))
    assert air_offset_hint(round_wide.astype(np.float32)) is None
    # blind probe P: a cylinder 1.5x the field rises only 4.8 % over the next columns inward; it got
    # the hint, and --air-columns 4 then took it to 2.95 dB without a word: the sample inside must
    # read twice the edges' level above them, and levelling says so where it does not
    cylinder = np.broadcast_to(np.sqrt(np.clip(48.0 ** 2 - cols ** 2, 0, None)) / 48.0, (40, 2, 64)).astype(np.float32)
    assert air_offset_hint(cylinder) is None
    counts = (1000.0 * np.exp(-cylinder)).astype(np.float32)
    chunk = RawChunk(counts, np.full((2, 2, 64), 1000.0, np.float32), np.zeros((2, 2, 64), np.float32), source="c.h5")
    with pytest.warns(DataRepairWarning, match=r"c\.h5: the outer 4 detector columns read more than half of what the "
                                               r"sample reads above them: a sample wider than the field of view\?"):
        line_integrals(chunk, corrections=Corrections(air_columns=4))
    with pytest.raises(ValueError, match="air columns"):
        Corrections(air_columns=-1)
    with pytest.raises(ValueError, match="stripe removal"):
        Corrections(remove_stripes="fw")
    assert Corrections(0.3, "mean", 4).to_dict() == {"remove_outliers": 0.3, "remove_stripes": "mean",
                                                     "air_columns": 4, "correct_jitter": False,
                                                     "correct_tilt": False}
    with pytest.raises(ValueError, match="correct_jitter must be true or false"):
        Corrections(correct_jitter=1)


@pytest.mark.parametrize("flux", ["decay", "step", "flicker", "bright flats"])
def test_a_beam_that_changed_after_the_flats_gets_a_hint_and_the_flag_levels_it(flux):
    """Blind probes L and N: a beam 25 % dimmer by the scan's end was read as a sample past the
    edges and padded, nothing pointing at --air-columns (modified MLEM 23.99 dB, 26.98 levelled,
    docs/benchmarks.md). Rows whose outer columns read as flat as air, off zero, get a hint naming
    the flag (not a repair: blind probe P's plate read the same), which levels them; a sample
    wider than the field (its edges rising inward) and a steady beam get none; 0: no hint. (A
    dip that comes back is levelled without the flag: the next test.)"""
    from recon.io.preprocess import Corrections, DataHintWarning, beam_change_rows

    rng = np.random.default_rng(4)
    n_angles, n_rows, n_cols = 90, 6, 96
    cols = np.arange(n_cols) - 47.5
    disk = np.sqrt(np.clip(30.0 ** 2 - cols ** 2, 0, None)) / 20.0  # line integral 3 at the middle
    beam = {"decay": np.exp(np.linspace(0, np.log(0.8), n_angles)), "step": np.where(np.arange(n_angles) >= 60,
            0.7, 1.0), "flicker": 1 + 0.04 * rng.standard_normal(n_angles), "bright flats": np.full(n_angles, 0.95)}[flux]
    flat = np.full((4, n_rows, n_cols), 2100.0, np.float32)
    dark = np.full((2, n_rows, n_cols), 100.0, np.float32)

    def scan(profile):
        counts = rng.poisson(2000.0 * beam[:, None, None] * np.exp(-profile)[None, None, :]
                             * np.ones((n_angles, n_rows, n_cols))) + 100.0
        return RawChunk(counts.astype(np.float32), flat, dark, source="x.h5")

    inside = scan(disk)
    with pytest.warns(DataHintWarning, match=r"x\.h5: the outer 4 detector columns of some rows read as flat as air, "
                                             r"off zero .* a beam that changed after the flats .* --air-columns 4"):
        off = line_integrals(inside)
    truth = np.broadcast_to(disk, off.shape)
    assert float(np.abs(off - truth).mean()) > 0.04  # not levelled: the flux's offset in every ray
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataHintWarning)
        p = line_integrals(inside, corrections=Corrections(air_columns=4))
        line_integrals(inside, corrections=Corrections(air_columns=0))  # 0: no hint
    edges = np.r_[0:8, n_cols - 8:n_cols]
    assert abs(float(p[..., edges].mean())) < 0.003  # levelled: air reads air
    assert float(np.abs(p - truth).mean()) < 0.03
    assert beam_change_rows(off.transpose(1, 0, 2).copy()).all()
    wide = np.sqrt(np.clip(70.0 ** 2 - cols ** 2, 0, None)) / 40.0  # 1.5x the field, edges 0.6 of the peak
    q = line_integrals(scan(wide), corrections=Corrections(air_columns=0)).transpose(1, 0, 2).copy()
    assert not beam_change_rows(q).any()
    beam = np.ones(n_angles)
    steady = line_integrals(scan(disk), corrections=Corrections(air_columns=0)).transpose(1, 0, 2).copy()
    assert not beam_change_rows(steady).any()


def _beam_scan(beam: np.ndarray, profile: np.ndarray, n_rows: int = 4, photons: float = 2000.0,
               seed: int = 4) -> RawChunk:
    """Counts of a (n_cols,) line-integral profile, the same in n_rows rows, under a beam whose
    level per frame is ``beam`` (1: as in the flats), Poisson noise at ``photons``."""
    rng = np.random.default_rng(seed)
    n_cols = profile.size
    counts = rng.poisson(photons * beam[:, None, None] * np.exp(-profile)[None, None, :]
                         * np.ones((beam.size, n_rows, n_cols))) + 100.0
    flat = np.full((4, n_rows, n_cols), photons + 100.0, np.float32)
    dark = np.full((2, n_rows, n_cols), 100.0, np.float32)
    return RawChunk(counts.astype(np.float32), flat, dark, source="x.h5")


@pytest.mark.parametrize("where", ["inside", "fills the field"])
def test_a_beam_dip_that_comes_back_is_levelled(where):
    """Blind probe P: a beam 30 % dimmer for 18 of 180 frames, mended by nothing (21.61 dB
    against 22.56 steady, docs/benchmarks.md "Beam dips"). A dip adds the same −log(0.7) to every
    ray of its frames, entered and left by a step: levelled to the frames around it, whether or
    not the sample leaves air at the edges; two dips, one of them a single frame, and a brighter
    one, too. Frames outside the dips are untouched."""
    from recon.io.preprocess import beam_steps

    n_angles, n_cols = 120, 96
    cols = np.arange(n_cols) - 47.5
    radius, scale = (30.0, 20.0) if where == "inside" else (70.0, 40.0)  # wide: transmissions 0.17-0.27
    profile = np.sqrt(np.clip(radius ** 2 - cols ** 2, 0, None)) / scale
    beam = np.ones(n_angles)
    beam[30:48], beam[70], beam[90:95] = 0.7, 0.6, 1.25
    steady = line_integrals(_beam_scan(np.ones(n_angles), profile))
    with pytest.warns(DataRepairWarning, match=r"x\.h5: projections 30-47, 70, 90-94 saw a beam 4\d% dimmer than "
                                               r"those around them .* levelled to its neighbours"):
        p = line_integrals(_beam_scan(beam, profile))
    truth = np.broadcast_to(profile, p.shape)
    noise = float(np.abs(steady - truth).mean())
    for frames in (slice(30, 48), slice(70, 71), slice(90, 95), slice(0, 30)):
        assert abs(float((p[:, frames] - truth[:, frames]).mean())) < 0.02, frames  # the 0.36 offset gone
    assert float(np.abs(p - truth).mean()) < 1.05 * noise
    np.testing.assert_array_equal(p[:, :30], steady[:, :30])  # the same noise (seed): untouched there
    # twice as dense (transmissions 0.03-0.07): steps too noisy to pair in some rows are left
    # alone there, and no frame between two dips is taken for one
    dense = _beam_scan(beam, 2 * profile)
    offsets, _ = beam_steps(-np.log((dense.tomo - 100.0) / 2000.0))
    moved = np.flatnonzero(np.abs(offsets).max(axis=1) > 0)
    assert set(moved) <= set(range(30, 48)) | {70} | set(range(90, 95)), moved


@pytest.mark.parametrize("case", ["plate turning edge-on", "wide disc, 30 angles", "flicker 4 %",
                                  "decay 25 %", "jitter 3 px", "noise-free, 20 angles"])
def test_what_is_no_beam_dip_is_not_levelled(case):
    """No dip is found where the beam was steady or changed smoothly: a plate far wider than the
    field turning edge-on (every ray changes alike, but gradually), a disc wider than the field
    seen from 30 angles, a beam flickering 4 % frame to frame or decaying 25 %, a sample jumping
    sideways, and noise-free projections from few angles."""
    from recon.io.preprocess import beam_steps

    rng = np.random.default_rng(7)
    n_angles, n_cols = (30 if "30" in case else 20 if "20" in case else 180), 96
    cols = np.arange(n_cols) - 47.5
    angles = np.deg2rad(np.linspace(0, 180, n_angles, endpoint=False))
    beam = np.ones(n_angles)
    disc = np.sqrt(np.clip(30.0 ** 2 - cols ** 2, 0, None)) / 20.0
    lines = np.broadcast_to(disc, (n_angles, n_cols)).copy()
    if case.startswith("plate"):
        lines = np.broadcast_to(np.minimum(0.6 / np.maximum(np.abs(np.cos(angles)), 1e-3), 5.0)[:, None],
                                (n_angles, n_cols)) + 0.002 * np.abs(cols)[None]
    elif case.startswith("wide"):
        lines = np.broadcast_to(np.sqrt(np.clip(70.0 ** 2 - cols ** 2, 0, None)) / 40.0, (n_angles, n_cols))
    elif case.startswith("flicker"):
        beam = 1 + 0.04 * rng.standard_normal(n_angles)
    elif case.startswith("decay"):
        beam = np.linspace(1, 0.75, n_angles)
    elif case.startswith("jitter"):
        lines = np.stack([np.interp(cols, cols + rng.integers(-3, 4), disc) for _ in range(n_angles)])
    else:  # noise-free: an off-centre ellipse
        lines = np.stack([np.sqrt(np.clip(1 - ((cols - 12 * np.cos(a)) / (35 - 15 * abs(np.cos(a)))) ** 2, 0, None))
                          for a in angles])
    p = (lines - np.log(beam)[:, None])[:, None, :].astype(np.float32)  # (angle, 1, col)
    if "noise-free" not in case:
        noisy = _beam_scan(np.ones(n_angles), np.zeros(n_cols), n_rows=1)
        tomo = np.random.default_rng(1).poisson(2000.0 * np.exp(-p)) + 100.0
        p = line_integrals(RawChunk(tomo.astype(np.float32), noisy.flats[:, :1], noisy.darks[:, :1]))
        p = p.transpose(1, 0, 2).copy()
    offsets, unmatched = beam_steps(p)
    assert not offsets.any() and not unmatched.any(), case


@pytest.mark.parametrize("case, fringes", [("absorption", False), ("phase contrast", True),
                                           ("absorption, zingers and ring columns", False),
                                           ("absorption, flats 5 % brighter", False)])
def test_phase_contrast_fringes_get_a_hint(case, fringes):
    """Blind probe Q: a TXM particle's Fresnel fringes (transmission above 1 beside its edges)
    read as cracks at its surface (1.1-3.3 % in an uncracked particle), without a word. Where the
    rays read more light than the flats in narrow valleys that move with the sample, a hint says
    so; absorption, zingers, ring columns and flats brighter than the beam get none."""
    from recon.io.preprocess import DataHintWarning, phase_fringe_share

    rng = np.random.default_rng(3)
    n_angles, n_cols, fine = 120, 128, 4
    x = (np.arange(n_cols * fine) - n_cols * fine / 2) / fine  # px, 4 samples per pixel
    angles = np.deg2rad(np.linspace(0, 180, n_angles, endpoint=False))
    counts = []
    for a in angles:  # an ellipse off the axis: its edges move with the angle
        half = 30 + 12 * np.cos(a) ** 2
        thick = 2 * np.sqrt(np.clip(half ** 2 - (x - 15 * np.cos(a)) ** 2, 0, None))  # px
        mu_t = 0.03 * thick
        wave = np.exp(-mu_t / 2 - 1j * 15 * mu_t / 2)  # delta/beta 15
        if fringes:  # Fresnel propagation: exp(-i pi lambda z k^2), lambda z = 3 px^2
            k = np.fft.fftfreq(x.size, d=1 / fine)
            wave = np.fft.ifft(np.fft.fft(wave) * np.exp(-1j * np.pi * 3.0 * k ** 2))
        intensity = (np.abs(wave) ** 2).reshape(n_cols, fine).mean(axis=1)
        counts.append(rng.poisson(2000 * np.broadcast_to(intensity, (4, n_cols))) + 100.0)
    tomo = np.asarray(counts, np.float32)
    flats = np.full((4, 4, n_cols), 2100.0, np.float32)
    darks = np.full((2, 4, n_cols), 100.0, np.float32)
    if "zingers" in case:
        hit = rng.random(tomo.shape) < 1e-3
        tomo[hit] *= rng.uniform(2, 10, int(hit.sum()))
        tomo[:, :, [20, 70]] = (tomo[:, :, [20, 70]] - 100) * 1.04 + 100
    if "brighter" in case:
        tomo = (tomo - 100) * 1.05 + 100
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = line_integrals(RawChunk(tomo, flats, darks, source="x.h5"))
    said = [w for w in caught if issubclass(w.category, DataHintWarning) and "Fresnel" in str(w.message)]
    share = phase_fringe_share(p.transpose(1, 0, 2).copy())
    if fringes:
        assert share > 10 * 5e-4 and len(said) == 1
        assert "x.h5: rays read more light than the flats" in str(said[0].message)
    else:
        assert share < 5e-4 / 5 and not said, (share, [str(w.message) for w in said])


def test_edges_that_move_under_a_percent_get_no_beam_change_hint():
    """Blind probe Q: projections after a Paganin filter (tomopy's retrieve_phase), whose
    kernel's tail moves the outer columns by -0.005..+0.002 with the angle (RMS ~0.005), got the
    beam-change hint naming --air-columns; under a 1 % beam change (0.01, 0.04 dB of modified MLEM) none
    is given, above it (a beam 2 % dimmer for half the scan) it still is."""
    from recon.io.preprocess import beam_change_rows

    rng = np.random.default_rng(5)
    n_angles, n_cols = 120, 96
    cols = np.arange(n_cols) - 47.5
    disc = np.sqrt(np.clip(30.0 ** 2 - cols ** 2, 0, None)) / 20.0
    tail = 0.0065 * np.sin(np.linspace(0, 4 * np.pi, n_angles))[:, None, None] - 0.003  # RMS 0.0055
    p = (disc[None, None, :] + tail + 0.0005 * rng.standard_normal((n_angles, 4, n_cols))).astype(np.float32)
    assert not beam_change_rows(p).any()
    step = np.where(np.arange(n_angles) < 60, 0.0, 0.02)[:, None, None]
    assert beam_change_rows((p + step).astype(np.float32)).all()


def test_saturated_flats_get_a_hint():
    from recon.io.preprocess import saturation_hint

    flats = np.random.default_rng(0).normal(60000, 300, (4, 8, 64)).astype(np.float32)
    assert saturation_hint(flats) is None
    assert saturation_hint(np.minimum(flats * 1.1, 65535.0)).startswith("flat-field counts reach 65535")
    assert saturation_hint(np.minimum(flats / 20, 4095.0)) is None  # 3000 counts: nowhere near 12-bit full scale
    clipped = flats.copy()
    clipped[0, 0, 0] = 65535.0  # one hot pixel is not a saturated open beam
    assert saturation_hint(clipped) is None


def test_sorting_and_all_name_algotom_where_it_is_missing(monkeypatch):
    import importlib.util

    from recon.io import preprocess

    real = importlib.util.find_spec
    monkeypatch.setattr(preprocess.importlib.util, "find_spec", lambda name, *a: None if name == "algotom" else real(name, *a))
    with pytest.raises(ValueError, match=r"stripe removal 'sorting' needs algotom \(pip install 'flytomo\[stripes\]'\)"):
        preprocess.Corrections(remove_stripes="sorting")
    assert preprocess.Corrections(remove_stripes="mean").remove_stripes == "mean"


def test_air_levelling_warns_where_the_edges_are_not_air(small_scan):
    from recon.io.preprocess import Corrections

    chunk = RawChunk(small_scan.tomo, small_scan.flats, small_scan.darks, source="scan_03.h5")
    n = small_scan.tomo.shape[2]
    with pytest.raises(FlytomoError, match=rf"scan_03\.h5: air levelling asks for {n} columns"):
        line_integrals(chunk, corrections=Corrections(air_columns=n))
    with pytest.warns(DataRepairWarning, match=r"scan_03\.h5: the outer 4 detector columns are not air"):
        line_integrals(chunk, corrections=Corrections(air_columns=4))  # random p in [0, 2] everywhere

# ---------------------------------------------------------------- bad input


def _bad_file(tmp_path, small_scan, case):
    path = tmp_path / f"bad_{case}.h5"
    if case == "missing":
        return path
    if case == "empty":
        path.touch()
        return path
    if case == "not_hdf5":
        path.write_text("angle,counts\n1,2\n")
        return path
    if case == "unknown_format":
        with h5py.File(path, "w") as f:
            f["something"] = np.zeros(3)
        return path
    _write("fxi" if case != "nxtomo_angles" else "nxtomo", path, small_scan)
    if case == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path
    with h5py.File(path, "r+") as f:
        if case == "missing_angles":
            del f["angle"]
        elif case == "missing_flats":
            del f["img_bkg"], f["img_bkg_avg"]
        elif case == "angle_count":
            del f["angle"]
            f["angle"] = np.linspace(0, 180, 31)
        elif case == "flat_shape":
            del f["img_bkg"]
            f["img_bkg"] = np.ones((4, 8, 47), np.float32)
        elif case == "nan_angles":
            f["angle"][3] = np.nan
        elif case == "nxtomo_angles":
            del f["entry/sample/rotation_angle"], f["entry/data/rotation_angle"]
            f["entry/sample/rotation_angle"] = np.zeros(5)
    return path


@pytest.mark.parametrize("case, message", [
    ("missing", "not found"), ("empty", "empty"), ("not_hdf5", "not an HDF5"), ("truncated", "truncated"),
    ("unknown_format", "format not recognised"), ("missing_angles", "'angle'"), ("missing_flats", "'img_bkg'"),
    ("angle_count", "31 angles for 32 projections"), ("flat_shape", r"\(8, 47\)|8, 47"), ("nan_angles", "NaN"),
    ("nxtomo_angles", "5 rotation angles"),
])
def test_bad_input_raises_one_line_flytomo_error(tmp_path, small_scan, case, message):
    path = _bad_file(tmp_path, small_scan, case)
    with pytest.raises(FlytomoError, match=message) as info:
        open_scan(path).read(0, 8)
    text = str(info.value)
    assert path.name in text and "\n" not in text


@pytest.mark.parametrize("rows", [(0, 9), (-1, 3), (4, 4), (8, 10)])
def test_rows_outside_scan(tmp_path, small_scan, rows):
    reader = open_scan(_write("dxchange", tmp_path / "scan.h5", small_scan))
    with pytest.raises(FlytomoError, match=r"scan\.h5.*valid rows are 0:8"):
        reader.read(*rows)


# ---------------------------------------------------------------- center


@pytest.mark.parametrize("center_offset", [-6.3, 0.0, 2.75, 9.4])
def test_find_center_recovers_shifted_axis(make_disc_sinogram, center_offset):
    rng = np.random.default_rng(int(10 * abs(center_offset)))
    n_cols, angles = 64, np.arange(90) * 2.0
    discs = [(rng.uniform(-10, 10), rng.uniform(-10, 10), rng.uniform(2, 8), rng.uniform(0.02, 0.1))
             for _ in range(4)]
    center = (n_cols - 1) / 2 + center_offset
    rows = np.stack([make_disc_sinogram(angles, n_cols, center, discs[i:] + discs[:i]) for i in range(3)])
    rows += rng.normal(0, 0.01 * rows.max(), rows.shape) + 0.05  # noise and a background offset
    assert abs(find_center(rows) - center) < 0.5
    # uneven angles over more than a half turn, given explicitly
    uneven = np.sort(np.concatenate([[0.0], rng.uniform(0, 190, 120)]))
    sino = make_disc_sinogram(uneven, n_cols, center, discs)
    assert abs(find_center(sino[None], uneven) - center) < 0.5


@pytest.mark.parametrize("start", [0.0, 350.0, 270.0, -90.0])
def test_find_center_where_the_angles_wrap_past_360(make_disc_sinogram, start):
    """A half turn starting at 350° stored as 350…359°, 0…169° (the encoder wrapped): the axis
    found within 0.1 px, as for the same turn stored 0…179° (the first half turn of the sorted
    angles, 0…169°, had been stretched over 180°: 0.57 px off on a 128-px phantom)."""
    rng = np.random.default_rng(4)
    discs = [(rng.uniform(-12, 12), rng.uniform(-12, 12), rng.uniform(2, 8), rng.uniform(0.02, 0.1))
             for _ in range(5)]
    center = 33.7
    angles = np.mod(start + np.arange(180) * 1.0, 360.0)
    sino = make_disc_sinogram(angles, 64, center, discs)
    assert abs(find_center(sino[None], angles) - center) < 0.1


def test_find_center_on_small_scan_file_shape(make_disc_sinogram):
    angles = np.linspace(0, 180, 32, endpoint=False)
    discs = [(3.0, -4.0, 6.0, 0.05), (-8.0, 2.0, 3.0, 0.08)]
    sino = make_disc_sinogram(angles, 48, 25.2, discs)
    assert abs(find_center(np.repeat(sino[None], 8, axis=0)) - 25.2) < 0.5


@pytest.mark.parametrize("span", [150.0, 120.0, 90.0])
def test_find_center_where_the_scan_misses_part_of_the_half_turn(make_disc_sinogram, span):
    """0–150°, 0–120°, 0–90° of a sample inside the field (noise, an air offset, a flat field's
    tilt): the centre of mass's sinusoid finds the axis within 0.4 px (0.06, 0.02, 0.34),
    a sixth or less of the error of mirroring half turns, all there was before (0.32, 1.5, 3.4)."""
    from recon.io.center import _half_turn, inside_field

    rng = np.random.default_rng(int(span))
    discs = [(rng.uniform(-12, 12), rng.uniform(-12, 12), rng.uniform(3, 9), rng.uniform(0.02, 0.1))
             for _ in range(5)]
    angles, center = np.arange(0.0, span, 1.5), 29.6
    sino = make_disc_sinogram(angles, 64, center, discs)
    sino = sino + rng.normal(0, 0.01 * sino.max(), sino.shape) + 0.05 + 0.0004 * np.arange(64)
    assert inside_field(sino)
    error = abs(find_center(sino[None], angles) - center)
    assert error < 0.4 and error < abs(find_center(_half_turn(sino, angles)) - center) / 5
    cut = sino[:, 16:48]  # the same sample past both edges: not inside, the mirror as before
    assert not inside_field(cut)
    assert find_center(cut, angles) == find_center(_half_turn(cut, angles))


def test_a_short_scan_of_a_sample_inside_the_field_gets_no_axis_warning(tmp_path, make_disc_sinogram):
    """0–120°: the wedge is named; its axis, found from the centre of mass, is not called doubtful."""
    from recon.io.scan_geometry import scan_geometry

    angles = np.arange(0.0, 120.0, 1.5)
    sino = make_disc_sinogram(angles, 48, 25.3, [(3.0, -4.0, 6.0, 0.05), (-8.0, 2.0, 3.0, 0.08)])
    tomo = (1000.0 * np.exp(-sino[:, None, :]) + 100.0).astype(np.float32)
    reader = open_scan(write_fxi(tmp_path / "short.h5", np.repeat(tomo, 4, axis=1),
                                 np.full((2, 4, 48), 1100.0, np.float32), np.full((2, 4, 48), 100.0, np.float32),
                                 angles))
    with pytest.warns(UserWarning, match="a wedge of 60° is missing") as caught:
        found = scan_geometry(reader, center="auto").center
    assert abs(found - 25.3) < 0.1
    assert not any("--center" in str(w.message) for w in caught)


# ---------------------------------------------------------------- OME-Zarr


def test_write_and_open_volume(tmp_path):
    vol = np.random.default_rng(0).random((6, 10, 12)).astype(np.float32)
    attrs = {"method": "mlem-flyscan", "options": {"iterations": np.int64(40)}, "input": tmp_path / "a.h5",
             "geometry": {"center": np.float64(5.5), "angles_deg": np.arange(3.0)}}
    path = write_volume(tmp_path / "vol.zarr", vol, attrs, chunks=(2, 10, 12), pixel_size_nm=21.6)
    array, got = open_volume(path)
    np.testing.assert_array_equal(array[:], vol)
    assert array.dtype == np.float32 and array.chunks == (2, 10, 12)
    assert got == {"method": "mlem-flyscan", "options": {"iterations": 40}, "input": str(tmp_path / "a.h5"),
                   "geometry": {"center": 5.5, "angles_deg": [0.0, 1.0, 2.0]}, "version": recon.__version__}
    root = json.loads((path / ".zattrs").read_text())
    ms = root["multiscales"][0]
    assert ms["version"] == "0.4" and [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert ms["datasets"][0]["path"] == "0"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [21.6] * 3
    assert _leftovers(tmp_path) == []


def test_4d_volume_axes_and_existing_path(tmp_path):
    vol = np.zeros((2, 3, 4, 4), np.float32)
    path = write_volume(tmp_path / "exp.zarr", vol, {"method": "fbp"})
    ms = json.loads((path / ".zattrs").read_text())["multiscales"][0]
    # no scan times: the time axis is an index without a unit (it claimed seconds, 1 s apart)
    assert [a["name"] for a in ms["axes"]] == ["t", "z", "y", "x"] and "unit" not in ms["axes"][0]
    assert open_volume(path)[0].chunks == (1, 3, 4, 4)
    with pytest.raises(FlytomoError, match="exp.zarr.*already exists"):
        write_volume(path, vol, {"method": "fbp"})
    write_volume(path, vol + 1, {"method": "mlem"}, overwrite=True)
    array, attrs = open_volume(path)
    assert attrs["method"] == "mlem" and float(array[1, 2, 3, 3]) == 1.0
    assert _leftovers(tmp_path) == []


def test_no_partial_store_after_error_while_writing(tmp_path):
    class Failing:
        shape = (8, 4, 4)

        def __getitem__(self, key):
            if key.start >= 4:
                raise RuntimeError("disk on fire")
            return np.ones((key.stop - key.start, 4, 4), np.float32)

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_volume(tmp_path / "v.zarr", Failing(), {"method": "fbp"}, chunks=(2, 4, 4))
    assert os.listdir(tmp_path) == []
    with pytest.raises(TypeError):  # provenance that is not JSON
        write_volume(tmp_path / "v.zarr", np.zeros((2, 2, 2)), {"method": object()})
    assert os.listdir(tmp_path) == []


def test_create_finalize_discard_and_resume(tmp_path):
    path = tmp_path / "exp.zarr"
    array = create_volume(path, (2, 4, 6, 6), (1, 2, 6, 6), {"method": "fbp"})
    assert not path.exists() and partial_path(path).is_dir()
    array[0, 0:2] = 1.0
    again = create_volume(path, (2, 4, 6, 6), (1, 2, 6, 6), {"method": "fbp", "run": 2}, resume=True)
    assert float(again[0, 1, 0, 0]) == 1.0  # resumed: the finished region is kept
    again[1] = 2.0
    finalize(path, attrs={"method": "fbp", "done": True})
    array, attrs = open_volume(path)
    assert attrs["done"] is True and float(array[1, 3, 5, 5]) == 2.0 and not partial_path(path).exists()
    with pytest.raises(FlytomoError, match="already exists"):
        create_volume(path, (2, 4, 6, 6), None, {})
    create_volume(tmp_path / "other.zarr", (3, 4, 4), None, {})
    discard(tmp_path / "other.zarr")
    assert _leftovers(tmp_path) == []
    with pytest.raises(FlytomoError, match="no store in progress"):
        finalize(tmp_path / "other.zarr")


def test_auto_center_looks_past_air_in_the_middle_rows(tmp_path, make_disc_sinogram):
    """A sample only in rows 0:10 and 54:64 of 64, air in between: the middle rows alone give
    a center of 17.0 for a true 36.3 (a 128³ scan so made: 31.0 for 66.3); the rows around
    the clearest of 8 probes give it back, with a warning that names them."""
    from recon.io.scan_geometry import scan_geometry

    rng = np.random.default_rng(3)
    angles, center, n_rows, n_cols = np.linspace(0, 180, 90, endpoint=False), 36.3, 64, 72
    sino = make_disc_sinogram(angles, n_cols, center, [(5.0, -4.0, 14.0, 0.05), (-9.0, 8.0, 8.0, 0.08)])
    flat = np.full((n_rows, n_cols), 3000.0)
    p = np.zeros((angles.size, n_rows, n_cols))
    p[:, :10] = sino[:, None, :]
    p[:, 54:] = sino[:, None, :]
    tomo = rng.poisson(flat[None] * np.exp(-p)).astype(np.float32)
    flats = rng.poisson(np.repeat(flat[None], 10, axis=0)).astype(np.float32)
    reader = open_scan(write_fxi(tmp_path / "low.h5", tomo, flats, np.zeros((2, n_rows, n_cols), np.float32), angles))
    with pytest.warns(UserWarning, match=r"low\.h5: rows 24:40 in the middle show no sample; the rotation axis "
                                         r"is found from rows (0:16|48:64)"):
        found = scan_geometry(reader, center="auto").center
    assert abs(found - center) < 0.5
    # a region (--rows) gets the whole scan's axis, so that pieces of one scan overlay
    with pytest.warns(UserWarning, match=r"rows 24:40 in the middle show no sample"):
        assert scan_geometry(reader, center="auto", rows=(48, 64)).center == found


def test_auto_center_at_the_edge_of_its_search_is_flagged(tmp_path, make_disc_sinogram):
    """An axis at column 55 of 72 lies just beyond the columns searched (17.5-53.5): the
    finder stops at the edge (54.0), and the user is told the center may be wrong."""
    from recon.io.scan_geometry import scan_geometry

    angles = np.linspace(0, 180, 60, endpoint=False)
    sino = make_disc_sinogram(angles, 72, 55.0, [(2.0, -1.0, 9.0, 0.1), (-3.0, 2.0, 4.0, 0.2)])
    tomo = (1000.0 * np.exp(-sino[:, None, :]) + 100.0).astype(np.float32)
    reader = open_scan(write_fxi(tmp_path / "edge.h5", np.repeat(tomo, 4, axis=1),
                                 np.full((2, 4, 72), 1100.0, np.float32), np.full((2, 4, 72), 100.0, np.float32),
                                 angles))
    with pytest.warns(UserWarning, match=r"edge\.h5: rotation axis found at column 54\.00, at the edge of the "
                                         r"columns searched \(17\.5-53\.5\): it may be wrong"):
        scan_geometry(reader, center="auto")


def test_open_volume_errors(tmp_path):
    with pytest.raises(FlytomoError, match="no such volume store"):
        open_volume(tmp_path / "nothing.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(FlytomoError, match="empty.zarr"):
        open_volume(tmp_path / "empty.zarr")


def test_file_to_center_pipeline(tmp_path, make_disc_sinogram):
    """Poisson counts of a shifted-axis object → FXI file → rows 2:6 → line integrals → center."""
    rng = np.random.default_rng(5)
    angles, center = np.linspace(0, 180, 32, endpoint=False), 24.2
    sino = make_disc_sinogram(angles, 48, center, [(4.0, -3.0, 7.0, 0.08), (-6.0, 5.0, 4.0, 0.1)])
    flat = np.full((8, 48), 2000.0)
    tomo = rng.poisson(flat[None] * np.exp(-sino[:, None, :])).astype(np.float32)  # (angle, row, col)
    flats = rng.poisson(np.repeat(flat[None], 10, axis=0)).astype(np.float32)
    darks = np.zeros((5, 8, 48), np.float32)
    reader = open_scan(write_fxi(tmp_path / "scan_0001.h5", tomo, flats, darks, angles))
    p = line_integrals(reader.read(2, 6))
    assert p.shape == (4, 32, 48)
    assert abs(find_center(p, reader.angles_deg) - center) < 0.5


def test_an_offset_axis_scan_of_a_whole_turn_is_named():
    """Half acquisition (a whole turn, the axis near one edge, the field twice the detector's)
    came out wrong without a word when the centre was given (the probe's disk at half its
    value): a hint now says flytomo does not stitch such scans. Centred or half-turn: none."""
    from recon.io.scan_geometry import half_acquisition_hint

    turn, half = np.arange(720) * 0.5, np.arange(360) * 0.5
    assert "offset-axis (half-acquisition)" in half_acquisition_hint(turn, 112, 99.5)
    assert "12 px from the detector's edge" in half_acquisition_hint(turn, 112, 99.5)
    assert half_acquisition_hint(turn, 112, 60.0) is None and half_acquisition_hint(turn, 112, None) is None
    assert half_acquisition_hint(half, 112, 99.5) is None


def test_photon_starved_rays_are_said_to_be_clamped(small_scan):
    """Transmissions below 1e-3 are read as 1e-3 (line integral 6.9): where more than 1 % are,
    a hint says the attenuation there comes out low (it was silent: 29 % clamped, 12 % low)."""
    from recon.io.preprocess import DataHintWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", DataHintWarning)
        line_integrals(RawChunk(small_scan.tomo, small_scan.flats, small_scan.darks, source="x.h5"))
    tomo = small_scan.tomo.copy()
    dark = small_scan.darks.mean(axis=0)
    cols = slice(0, max(1, tomo.shape[2] // 20))  # 5 % of the samples: dark counts only
    tomo[:, :, cols] = dark[None, :, cols]
    with pytest.warns(DataHintWarning, match=r"x\.h5: more than 1% of the transmissions .* below 0\.001"):
        p = line_integrals(RawChunk(tomo, small_scan.flats, small_scan.darks, source="x.h5"))
    assert p[:, :, cols].max() == pytest.approx(-np.log(1e-3), rel=1e-5)


def test_rows_and_columns_swapped_in_the_file_get_a_hint():
    """A blind probe: projections stored (angle, column, row) reconstructed into garbage (corr
    0.53 with the truth) without a word. In parallel beam a row's total attenuation does not
    change with the angle (the sample inside the field): 0.2 % here, 0.011 at most over ~60
    scans of the probe; swapped, 10 % and more: a hint. A sample wider than the field (its
    totals change too) gets none: it cannot be told apart."""
    import torch

    from recon.geometry import ScanGeometry
    from recon.io.scan_geometry import row_total_hint
    from recon.operators import Projector

    n = 32
    zz, yy, xx = np.mgrid[:n, :n, :n] - (n - 1) / 2
    vol = ((xx / 9) ** 2 + (yy / 6) ** 2 + (zz / 13) ** 2 < 1) * 1.0 + ((xx - 3) ** 2 + yy ** 2 + (zz + 5) ** 2 < 9) * 0.5
    g = ScanGeometry.create(np.linspace(0, 180, 90, endpoint=False), n)
    sino = Projector(g).forward(torch.from_numpy(vol)).numpy() * 0.05  # (z, angle, col)
    assert row_total_hint(sino) is None
    swapped = sino.transpose(2, 1, 0)  # the same projections read with rows for columns
    hint = row_total_hint(swapped)
    assert hint is not None and "rows and columns swapped" in hint
    dense = sino * 3  # line integrals to 3.2; photon-starved (I0 40): the totals' noise was 9 %, a hint
    starved = -np.log(np.maximum(np.random.default_rng(0).poisson(40 * np.exp(-dense)), 0.04) / 40)
    assert row_total_hint(starved) is None and "swapped" in row_total_hint(starved.transpose(2, 1, 0))
    wide = ((xx / 30) ** 2 + (yy / 8) ** 2 < 1) * 1.0  # an elongated sample past the field's edges
    assert row_total_hint(Projector(g).forward(torch.from_numpy(wide)).numpy() * 0.05) is None


def test_a_detector_much_taller_than_wide_gets_a_hint(tmp_path):
    """A blind probe: a stack of 128-row x 6-column projections (its rows and columns swapped)
    made a 128 x 6 x 6 volume, exit 0, with no word on the shape."""
    from recon.io import write_fxi
    from recon.io.preprocess import DataHintWarning
    from recon.io.scan_geometry import scan_geometry

    rng = np.random.default_rng(0)
    tomo = rng.poisson(1000.0, (30, 64, 12)).astype(np.uint16)
    path = write_fxi(tmp_path / "tall.h5", tomo, np.full((2, 64, 12), 1000, np.uint16),
                     np.zeros((1, 64, 12), np.uint16), np.linspace(0, 180, 30, endpoint=False))
    with pytest.warns(DataHintWarning, match=r"tall\.h5: the projections read 64 rows x 12 columns, a detector over 4 "
                                             r"times taller than wide: are they stored with rows and columns swapped"):
        scan_geometry(open_scan(path), center="middle", pad_columns=0)


def test_a_broken_external_link_is_named_not_called_an_unknown_format(tmp_path):
    """A blind probe: a master file copied without its data file said 'format not recognised'."""
    path = tmp_path / "master.h5"
    with h5py.File(path, "w") as f:
        f["exchange/data"] = h5py.ExternalLink("missing_data.h5", "/data")
        f["exchange/theta"] = np.arange(4.0)
    with pytest.raises(FlytomoError, match=r"'/exchange/data' links to missing_data.h5, which is missing"):
        open_scan(path)


def test_projections_stored_rows_first_are_named_as_such(tmp_path, small_scan):
    """A blind probe: (rows, angles, cols) data was refused for its flats' shape."""
    path = _write("dxchange", tmp_path / "dx.h5", small_scan)
    with h5py.File(path, "r+") as f:
        data = f["exchange/data"][()]
        del f["exchange/data"]
        f["exchange/data"] = np.moveaxis(data, 0, 1)
    with pytest.raises(FlytomoError, match=r"stored as \(row, angle, col\)\? flytomo reads \(angle, row, col\)"):
        open_scan(path)


def test_a_beam_offset_is_not_called_a_sample_past_the_edges():
    """A blind probe: flats 10 % brighter than the beam read 'the sample reaches past the
    detector's edges (0.07 of the peak)' beside the air hint. Where the edges read alike at
    every angle and as flat as air, the pad's note says it is an offset; a disc past the edges
    keeps its note."""
    import warnings

    from recon.io.scan_geometry import _auto_pad

    cols = np.arange(128) - 63.5
    disc = np.sqrt(np.clip(40.0 ** 2 - cols ** 2, 0, None)) / 40.0
    offset = np.broadcast_to(disc + np.float32(np.log(1.1)), (4, 90, 128)).astype(np.float32)
    past = np.broadcast_to(np.sqrt(np.clip(66.0 ** 2 - cols ** 2, 0, None)) / 20.0, (4, 90, 128)).astype(np.float32)
    for sino, words in ((offset, "as flat as air (flats at another beam intensity"),
                        (past, "the sample reaches past the detector's edges")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert _auto_pad(lambda s=sino: s, "scan.h5") > 0
        assert any(words in str(w.message) for w in caught), [str(w.message) for w in caught]


@pytest.mark.parametrize("scale,hinted", [(1, False), (2, True)])
def test_angles_of_a_half_turn_recorded_as_a_whole_turn_get_a_hint(tmp_path, scale, hinted):
    """A blind probe (W): a half turn stored as 0-356.4° (each angle doubled) reconstructed to a
    ring and a bar, exit 0, no word. The projections such angles put half a turn apart are not
    mirror images: a hint (1.8x the neighbours' difference here). The true whole turn, none. The
    scan is skimage's radon of a cracked disc, written with h5py as DataExchange."""
    from skimage.transform import radon

    from recon.io.preprocess import DataHintWarning
    from recon.io.scan_geometry import scan_geometry

    n, rng = 80, np.random.default_rng(1)
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    disc = (x ** 2 + y ** 2 < 30 ** 2) * 0.02
    disc[(np.abs(x - 5) < 1) | (np.abs(y + 8 - 0.3 * x) < 0.8)] = 0
    turned = np.linspace(0, 358.2, 200) if scale == 1 else np.linspace(0, 178.2, 100)
    li = np.mean([radon(disc, turned + d, circle=True) for d in np.linspace(-0.7, 0.7, 4)], axis=0).T
    counts = rng.poisson(2000 * np.exp(-np.repeat(li[:, None, :], 8, axis=1))).astype(np.uint16)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["exchange/data"] = counts
        f["exchange/data_white"] = rng.poisson(2000, (4, 8, n)).astype(np.uint16)
        f["exchange/data_dark"] = np.zeros((2, 8, n), np.uint16)
        f["exchange/theta"] = turned * scale
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan_geometry(open_scan(path), pad_columns=0)
    said = [str(w.message) for w in caught if issubclass(w.category, DataHintWarning) and "mirror images" in str(w.message)]
    assert len(said) == int(hinted), said
    if hinted:
        assert "(they span 356.4; a half turn recorded as a whole one?)" in said[0], said


def test_the_time_axis_is_in_seconds_only_where_the_scans_are_evenly_spaced():
    """A blind probe: scans started at 0, 60 and 700 s were put at 0, 350 and 700 s (the median
    step) for a viewer. OME-Zarr 0.4 states one step: given where the starts are even, else an index."""
    from recon.io.omezarr import even_time_step_s, multiscales

    assert even_time_step_s([0.0, 108.0, 216.5, 324.0]) == pytest.approx(108.0)
    assert even_time_step_s([0.0, 60.0, 700.0]) is None
    assert even_time_step_s([5.0]) is None and even_time_step_s([0.0, None, 20.0]) is None
    assert even_time_step_s([10.0, 10.0]) is None
    timed = multiscales(4, 21.6, "x.zarr", 108.0)[0]
    assert timed["axes"][0] == {"name": "t", "type": "time", "unit": "second"}
    assert timed["datasets"][0]["coordinateTransformations"][0]["scale"] == [108.0, 21.6, 21.6, 21.6]
    index = multiscales(4, 21.6, "x.zarr", None)[0]
    assert index["axes"][0] == {"name": "t", "type": "time"}
    assert index["datasets"][0]["coordinateTransformations"][0]["scale"][0] == 1.0


def test_a_file_still_written_in_swmr_mode_is_read_and_a_crashed_writers_mark_is_named(tmp_path):
    """A blind probe: a scan an acquisition still wrote in SWMR mode was 'truncated or corrupt?'
    with HDF5's advice to run h5clear, dangerous on a live file. SWMR files are read as SWMR
    readers; a crashed writer's mark is named as such; a dangling link names its target."""
    import subprocess
    import sys

    from recon.io._h5 import open_h5

    writer = ("import h5py, numpy as np, sys, time\n"
              "f = h5py.File(sys.argv[2], 'w', libver='latest')\n"
              "f.create_dataset('img_tomo', data=np.ones((10, 8, 8), np.uint16), maxshape=(None, 8, 8))\n"
              "if sys.argv[1] == 'swmr':\n    f.swmr_mode = True\n"
              "f.flush()\nprint('ready', flush=True)\ntime.sleep(60)\n")
    for mode in ("swmr", "crash"):
        proc = subprocess.Popen([sys.executable, "-c", writer, mode, str(tmp_path / f"{mode}.h5")],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            if mode == "swmr":  # read while its writer still has it open
                with open_h5(tmp_path / "swmr.h5") as f:
                    assert f["img_tomo"].shape == (10, 8, 8)
            else:
                proc.kill()
                proc.wait()
                with pytest.raises(FlytomoError, match=r"crash\.h5: is marked open for writing by another program"):
                    open_h5(tmp_path / "crash.h5")
        finally:
            proc.kill()
            proc.wait()
    (tmp_path / "link.h5").symlink_to(tmp_path / "gone.h5")
    with pytest.raises(FlytomoError, match=r"link\.h5: is a link to .*gone\.h5, which is missing"):
        open_h5(tmp_path / "link.h5")
