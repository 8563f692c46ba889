"""Scan files written by other tools (tomopy/dxchange, the FXI beamline, nxtomomill/tomoscan),
built here with h5py directly (and one with ESRF's ``nxtomo`` package) — never with flytomo's
writers — and read or refused correctly.

The object is a few spheres with exact (analytic) line integrals, so a reconstruction can be
compared with the truth independently of flytomo's projector.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpc.cli import main
from tests.cli import cli_in_process
from recon.errors import FlytomoError
from recon.io import open_scan, open_volume

N_COLS, N_ROWS, N_ANGLES = 64, 8, 90
# spheres (x, y, z, radius, attenuation per pixel); x, y in pixels from the axis, z in rows
SPHERES = ((0.0, 0.0, 3.5, 22.0, 0.02), (9.0, -6.0, 3.0, 7.0, 0.03), (-12.0, 8.0, 4.0, 5.0, -0.015))


def truth(n: int = N_COLS, rows: int = N_ROWS, sub: int = 4) -> np.ndarray:
    """(z, y, x) attenuation per pixel of SPHERES (row z at height z, pixel areas sampled sub²)."""
    s = (np.arange(n * sub) + 0.5) / sub - 0.5
    x = s - (n - 1) / 2
    xx, yy = np.meshgrid(x, -x)
    out = np.zeros((rows, n, n))
    for z in range(rows):
        img = np.zeros_like(xx)
        for x0, y0, z0, r, mu in SPHERES:
            rz2 = r * r - (z - z0) ** 2
            if rz2 > 0:
                img += mu * ((xx - x0) ** 2 + (yy - y0) ** 2 <= rz2)
        out[z] = img.reshape(n, sub, n, sub).mean(axis=(1, 3))
    return out


def projections(angles_deg: np.ndarray, n: int = N_COLS, rows: int = N_ROWS, center: float | None = None,
                sub: int = 4) -> np.ndarray:
    """(angle, row, col) exact line integrals of SPHERES (axis at ``center``, default (n−1)/2)."""
    c = (n - 1) / 2 if center is None else center
    th = np.deg2rad(np.asarray(angles_deg, np.float64))[:, None, None]
    u = np.arange(n)[None, :, None] + (np.arange(sub)[None, None, :] + 0.5) / sub - 0.5
    out = np.zeros((th.shape[0], rows, n))
    for z in range(rows):
        acc = np.zeros((th.shape[0], n, sub))
        for x0, y0, z0, r, mu in SPHERES:
            rz2 = r * r - (z - z0) ** 2
            if rz2 > 0:
                t = u - c - x0 * np.cos(th) - y0 * np.sin(th)
                acc += 2.0 * mu * np.sqrt(np.clip(rz2 - t * t, 0.0, None))
        out[:, z] = acc.mean(axis=-1)
    return out


def counts(p: np.ndarray, n_flats: int = 6, n_darks: int = 4, i0: float = 8000.0, seed: int = 0):
    """uint16 detector counts: (tomo, flats, darks), a per-pixel gain, dark ≈ 100, Poisson noise."""
    rng = np.random.default_rng(seed)
    gain = i0 * rng.uniform(0.8, 1.2, p.shape[1:])
    dark = 100.0 + rng.uniform(-5, 5, p.shape[1:])
    tomo = rng.poisson(gain * np.exp(-p)) + dark
    flats = rng.poisson(np.broadcast_to(gain, (n_flats, *gain.shape))) + dark
    darks = rng.normal(dark, 2.0, (n_darks, *dark.shape))
    return tuple(np.clip(np.rint(a), 0, 65535).astype(np.uint16) for a in (tomo, flats, darks))


def _stack(group: h5py.Group, name: str, data: np.ndarray, **kw) -> h5py.Dataset:
    """A frame stack as detectors write it: one chunk per frame, optionally gzip."""
    return group.create_dataset(name, data=data, chunks=(1, *data.shape[1:]) if data.ndim == 3 else None, **kw)


# ------------------------------------------------------------------ producers' layouts


def write_dxchange_tomopy(path: Path, angles_deg: np.ndarray, *, theta=None, theta_units: str | bytes | None = "deg",
                          white: bool = True, dark: bool = True, normalized: str | None = None) -> Path:
    """APS/tomopy Data Exchange: /exchange/data, data_white, data_dark, theta (degrees per the
    spec); /measurement and /process groups as at APS beamlines; gzip frame chunks.
    ``normalized``: "transmission" or "line integrals" writes float32 data of that kind
    (with flats of ones and darks of zeros where ``white``/``dark``)."""
    p = projections(angles_deg)
    tomo, flats, darks = counts(p)
    with h5py.File(path, "w") as f:
        f.attrs["implements"] = "exchange:measurement:process"
        ex = f.create_group("exchange")
        if normalized:
            t = np.exp(-p) * np.random.default_rng(1).normal(1.0, 0.003, p.shape)
            _stack(ex, "data", (t if normalized == "transmission" else -np.log(t)).astype(np.float32))
        else:
            _stack(ex, "data", tomo, compression="gzip", compression_opts=4)
        if white:
            _stack(ex, "data_white", np.ones((1, *p.shape[1:]), np.float32) if normalized else flats, compression="gzip")
        if dark:
            _stack(ex, "data_dark", np.zeros((1, *p.shape[1:]), np.float32) if normalized else darks, compression="gzip")
        if theta is not False:
            ex["theta"] = angles_deg if theta is None else theta
            if theta_units is not None:
                ex["theta"].attrs["units"] = theta_units
        f["measurement/instrument/detector/exposure_time"] = [0.05]
        f["measurement/instrument/monochromator/energy"] = [25.0]
        f["measurement/instrument/detection_system/objective/resolution"] = [0.65]
        f["measurement/instrument/detection_system/objective/resolution"].attrs["units"] = "microns"
        f["measurement/sample/name"] = np.array([b"NMC particle"])
        f["process/acquisition/start_date"] = np.array([b"May 29, 2019 19:20:21"])
        f["process/acquisition/rotation/rotation_speed"] = [30.0]
    return path


def write_fxi_beamline(path: Path, angles_deg: np.ndarray, *, stacks: bool = True) -> Path:
    """NSLS-II FXI (18-ID) fly-scan: uint16 img_tomo/img_bkg/img_dark, float32 (1, row, col)
    averages, angle in degrees (−90..90 here, descending), X_eng, scan_id, 'Pixel Size' text."""
    tomo, flats, darks = counts(projections(angles_deg))
    with h5py.File(path, "w") as f:
        f.create_dataset("img_tomo", data=tomo, chunks=(1, *tomo.shape[1:]), compression="gzip")
        if stacks:
            f["img_bkg"], f["img_dark"] = flats, darks
        f["img_bkg_avg"] = flats.mean(axis=0, keepdims=True).astype(np.float32)
        f["img_dark_avg"] = darks.mean(axis=0, keepdims=True).astype(np.float32)
        f["angle"] = angles_deg
        f["X_eng"] = 9.0
        f["scan_id"] = np.int64(43210)
        f["Pixel Size"] = b"21.6nm"
        f["note"] = b"heating 600C"
        f["uid"] = b"2a5c1e6a-0f4e-4b5e-9a8d-1f2e3d4c5b6a"
    return path


def write_nxtomo_nxtomomill(path: Path, angles_deg: np.ndarray, *, units: str = "degree", entries: int = 1,
                            invalid: bool = False, control: bool = True, alignment: bool = True) -> Path:
    """nxtomomill/tomoscan NXtomo: /entry0000 with darks, flats, projections (flats also in the
    middle and at the end), alignment ('return') projections at the end (image_key 0,
    image_key_control −1), optionally invalid frames (key 3) in the middle; uint16 frames;
    rotation_angle with a units attribute; pixel size and distance in metres; /entry0000/data links."""
    rad = units.startswith("rad")
    half = angles_deg.size // 2
    align_deg = np.array([180.0, 90.0, 0.0])
    p = projections(np.concatenate([angles_deg, align_deg]))
    tomo, flats, darks = counts(p, n_flats=6)
    proj, align = tomo[: angles_deg.size], tomo[angles_deg.size:]
    parts = [(darks, 2, 2, np.zeros(len(darks))), (flats[:2], 1, 1, np.zeros(2)),
             (proj[:half], 0, 0, angles_deg[:half])]
    if invalid:
        parts.append((np.zeros((3, *proj.shape[1:]), np.uint16), 3, 3, np.full(3, angles_deg[half])))
    parts += [(flats[2:4], 1, 1, np.full(2, angles_deg[half])), (proj[half:], 0, 0, angles_deg[half:]),
              (flats[4:], 1, 1, np.full(2, angles_deg[-1]))]
    if alignment:
        parts.append((align, 0, -1, align_deg))
    data = np.concatenate([a for a, *_ in parts])
    key = np.concatenate([np.full(len(a), k) for a, k, _, _ in parts]).astype(np.int32)
    key_control = np.concatenate([np.full(len(a), k) for a, _, k, _ in parts]).astype(np.int32)
    rot = np.concatenate([r for *_, r in parts])
    with h5py.File(path, "w") as f:
        for e in range(entries):
            entry = f.create_group(f"entry{e:04d}")
            entry.attrs["NX_class"] = "NXentry"
            entry.attrs["definition"] = "NXtomo"
            entry["definition"] = b"NXtomo"
            entry["start_time"] = f"2023-05-0{e + 1}T12:00:00+02:00"
            entry["title"] = f"sample_{e}"
            det = entry.create_group("instrument/detector")
            det.attrs["NX_class"] = "NXdetector"
            _stack(det, "data", data, compression="gzip")
            det["image_key"] = key
            if control:
                det["image_key_control"] = key_control
            det["x_pixel_size"] = det["y_pixel_size"] = 6.5e-7
            det["x_pixel_size"].attrs["units"] = det["y_pixel_size"].attrs["units"] = "m"
            det["distance"] = 0.05
            det["distance"].attrs["units"] = "m"
            det["count_time"] = np.full(len(key), 0.05)
            sample = entry.create_group("sample")
            sample["rotation_angle"] = np.deg2rad(rot) if rad else rot
            sample["rotation_angle"].attrs["units"] = units
            sample["name"] = b"particle"
            entry["beam/incident_energy"] = 17.0
            entry["beam/incident_energy"].attrs["units"] = "keV"
            nxdata = entry.create_group("data")
            nxdata.attrs["NX_class"] = "NXdata"
            nxdata["data"], nxdata["image_key"], nxdata["rotation_angle"] = det["data"], det["image_key"], sample["rotation_angle"]
    return path


# ------------------------------------------------------------------ helpers


def recon_fbp(path: Path, out: Path, *extra: str) -> np.ndarray:
    """``flytomo recon path --method fbp`` in process; the volume (z, y, x)."""
    assert main(["recon", str(path), "--out", str(out), "--method", "fbp", "--quiet", *extra]) == 0
    return np.asarray(open_volume(out)[0][:])


def correlation(volume: np.ndarray, rows: tuple[int, int] = (0, N_ROWS)) -> float:
    """Pearson correlation with the truth inside the reconstruction disk."""
    t = truth()[rows[0]:rows[1]]
    n = t.shape[-1]
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    disk = np.broadcast_to(xx ** 2 + yy ** 2 <= (n / 2 - 2) ** 2, t.shape)
    return float(np.corrcoef(volume[disk], t[disk])[0, 1])


HALF = np.linspace(0.0, 180.0, N_ANGLES, endpoint=False)
FULL = np.linspace(0.0, 360.0, N_ANGLES, endpoint=False)
FXI_ANGLES = np.linspace(90.0, -90.0, N_ANGLES, endpoint=False)  # FXI scans −90..90, either way round
RAD = np.deg2rad(HALF)

# id: (write(path), the angles flytomo must read (degrees), the warning it must give or None)
LAYOUTS = {
    "dxchange-uint16-gzip": (lambda p: write_dxchange_tomopy(p, HALF), HALF, None),
    "dxchange-theta-rad-bytes-units": (
        lambda p: write_dxchange_tomopy(p, HALF, theta=RAD, theta_units=np.bytes_(b"radians")), HALF, None),
    "dxchange-theta-rad-no-units": (
        lambda p: write_dxchange_tomopy(p, HALF, theta=RAD, theta_units=None), HALF, "no units.*taken as radians"),
    "dxchange-no-theta": (lambda p: write_dxchange_tomopy(p, np.linspace(0, 180, N_ANGLES), theta=False),
                          np.linspace(0, 180, N_ANGLES), "no '/exchange/theta'.*0–180° inclusive"),
    "dxchange-no-dark": (lambda p: write_dxchange_tomopy(p, HALF, dark=False), HALF, "no dark fields.*taken as 0"),
    "dxchange-full-turn": (lambda p: write_dxchange_tomopy(p, FULL), FULL, None),
    "dxchange-float-transmission": (
        lambda p: write_dxchange_tomopy(p, HALF, normalized="transmission", white=False, dark=False), HALF,
        "no flat fields.*taken as transmissions"),
    "dxchange-float-transmission-ones": (lambda p: write_dxchange_tomopy(p, HALF, normalized="transmission"), HALF, None),
    "dxchange-float-line-integrals": (
        lambda p: write_dxchange_tomopy(p, HALF, normalized="line integrals", white=False, dark=False), HALF,
        "no flat fields.*taken as line integrals"),
    "fxi-descending": (lambda p: write_fxi_beamline(p, FXI_ANGLES), FXI_ANGLES, None),
    "fxi-averages-only": (lambda p: write_fxi_beamline(p, HALF, stacks=False), HALF, None),
    "nxtomo-alignment-and-mid-flats": (lambda p: write_nxtomo_nxtomomill(p, HALF), HALF, None),
    "nxtomo-radians": (lambda p: write_nxtomo_nxtomomill(p, HALF, units="rad"), HALF, None),
    "nxtomo-invalid-frames": (lambda p: write_nxtomo_nxtomomill(p, HALF, invalid=True), HALF, None),
    "nxtomo-alignment-without-control": (lambda p: write_nxtomo_nxtomomill(p, HALF, control=False), HALF,
                                         "no image_key_control: the last 3 projections step back.*180, 90, 0"),
    "nxtomo-two-entries": (lambda p: write_nxtomo_nxtomomill(p, HALF, entries=2), HALF,
                           "2 NXtomo entries: reading 'entry0000' only"),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_foreign_layout_reconstructs_the_object(tmp_path, layout):
    write, expected_angles, warning = LAYOUTS[layout]
    path = write(tmp_path / f"{layout}.h5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # …which also revives torch's once-per-process notice
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        reader = open_scan(path)
        volume = recon_fbp(path, tmp_path / "v.zarr")
    messages = [str(w.message) for w in caught]
    if warning is None:
        assert messages == []
    else:
        assert messages and all(str(path) in m for m in messages)
        assert any(re.search(warning, m) for m in messages), messages
    assert reader.shape == (N_ANGLES, N_ROWS, N_COLS)
    np.testing.assert_allclose(reader.angles_deg, expected_angles, atol=1e-9)
    assert correlation(volume) > 0.98
    t = truth()
    scale = float((volume * t).sum() / (t * t).sum())  # attenuation per pixel, not just the shape
    assert 0.95 < scale < 1.05 if "no-dark" not in layout else 0.9 < scale < 1.05


def test_foreign_metadata(tmp_path):
    dx = open_scan(write_dxchange_tomopy(tmp_path / "dx.h5", HALF))
    assert dx.metadata == {"scan_id": None, "scan_time": 1559157621.0, "scan_time_naive": True,  # APS: local time
                           "energy_keV": 25.0, "pixel_size_nm": 650.0}
    fxi = open_scan(write_fxi_beamline(tmp_path / "fxi.h5", FXI_ANGLES))
    assert fxi.metadata == {"scan_id": 43210, "scan_time": None, "energy_keV": 9.0, "pixel_size_nm": 21.6}
    nx = open_scan(write_nxtomo_nxtomomill(tmp_path / "nx.nxs", HALF))
    assert nx.metadata == {"scan_id": None, "scan_time": 1682935200.0, "energy_keV": 17.0, "pixel_size_nm": 650.0}


def test_nxtomo_alignment_frames_are_not_projections(tmp_path):
    """image_key_control −1 frames (image_key 0) after the scan are left out; flats before,
    in the middle and after are all averaged."""
    path = write_nxtomo_nxtomomill(tmp_path / "nx.nxs", HALF, invalid=True)
    reader = open_scan(path)
    with h5py.File(path) as f:
        data = f["entry0000/instrument/detector/data"][:, 2:4].astype(np.float32)
        key = f["entry0000/instrument/detector/image_key"][:]
        control = f["entry0000/instrument/detector/image_key_control"][:]
    chunk = reader.read(2, 4)
    assert (key == 0).sum() == N_ANGLES + 3 and (control == -1).sum() == 3
    np.testing.assert_array_equal(chunk.tomo, data[control == 0])
    np.testing.assert_array_equal(chunk.flats, data[key == 1])
    assert chunk.flats.shape[0] == 6 and chunk.darks.shape[0] == 4


def test_nxtomo_written_by_the_esrf_nxtomo_library(tmp_path):
    """A file made by ESRF's own ``nxtomo`` package (what nxtomomill and BLISS tooling use): darks,
    flats split around the projections, three alignment frames after them (image_key_control −1),
    angles stored in radians by unit, pixel size in metres, start_time as ISO text."""
    pytest.importorskip("nxtomo")
    import datetime

    from nxtomo.application.nxtomo import NXtomo
    from nxtomo.nxobject.nxdetector import ImageKey
    from pint import get_application_registry

    ureg = get_application_registry()
    tomo, flats, darks = counts(projections(HALF))
    align = counts(projections(np.array([180.0, 90.0, 0.0])), seed=1)[0]
    frames = [(darks, ImageKey.DARK_FIELD, np.zeros(len(darks))), (flats[:3], ImageKey.FLAT_FIELD, np.zeros(3)),
              (tomo, ImageKey.PROJECTION, HALF), (flats[3:], ImageKey.FLAT_FIELD, np.full(3, 180.0)),
              (align, ImageKey.ALIGNMENT, np.array([180.0, 90.0, 0.0]))]
    nx = NXtomo()
    nx.instrument.detector.data = np.concatenate([f[0] for f in frames])
    nx.instrument.detector.image_key_control = np.concatenate([np.full(len(f[0]), f[1].value) for f in frames])
    nx.sample.rotation_angle = np.radians(np.concatenate([f[2] for f in frames])) * ureg.radian
    nx.instrument.detector.x_pixel_size = nx.instrument.detector.y_pixel_size = 30e-9 * ureg.meter
    nx.instrument.beam.incident_energy = 8.0 * ureg.keV
    nx.start_time = datetime.datetime(2026, 12, 5, 10, 0, 0, tzinfo=datetime.timezone.utc)
    path = tmp_path / "esrf.nx"
    nx.save(str(path), data_path="/entry0000")

    reader = open_scan(path)
    assert reader.shape == (N_ANGLES, N_ROWS, N_COLS)
    np.testing.assert_allclose(reader.angles_deg, HALF, atol=1e-9)
    assert reader.metadata["pixel_size_nm"] == pytest.approx(30.0)
    assert reader.metadata["energy_keV"] == pytest.approx(8.0)
    assert reader.metadata["scan_time"] == datetime.datetime(2026, 12, 5, 10, tzinfo=datetime.timezone.utc).timestamp()
    chunk = reader.read(0, N_ROWS)
    np.testing.assert_array_equal(chunk.tomo, tomo)
    assert chunk.flats.shape[0] == 6 and chunk.darks.shape[0] == 4
    volume = recon_fbp(path, tmp_path / "v.zarr")
    assert correlation(volume) > 0.98


_AFTER_FLATS = np.r_[np.arange(N_ANGLES), N_ANGLES + 2 + np.arange(3)]  # frame indices: flats, then 3 frames


@pytest.mark.parametrize("angles, frames, expected", [
    (np.r_[HALF, 180.0, 90.0, 0.0], _AFTER_FLATS, 3),       # nxtomomill's return frames, after the last flats
    (np.r_[HALF, 180.0, 90.0, 0.0], None, 2),               # without frame indices: from the first step back
    (np.r_[FXI_ANGLES, -90.0, 0.0, 90.0], None, 2),         # the same on a descending scan
    (np.r_[HALF, 90.0, 45.0, 0.0], None, 3),
    (HALF, None, 0),                                        # no alignment frames
    (np.r_[HALF, 178.0, 180.0], _AFTER_FLATS[:-1], 0),      # a last run after flats that goes on: kept
    (np.r_[FULL[5:], FULL[:5]] % 360.0, None, 0),           # a 360° scan stored wrapped: kept
    (np.r_[HALF, HALF[::-1]], None, 0),                     # back and forth: too long to be alignment
    (np.r_[HALF[10:], -30.0, -40.0], None, 0),              # a tail outside the scan's angles: kept
    (np.r_[HALF[:40], HALF[39], HALF[40:]], None, 0),       # a repeated angle is not a step back
])
def test_return_frames_counts_only_short_tails_back_into_the_scan(angles, frames, expected):
    from recon.io.nxtomo import return_frames
    assert return_frames(angles, frames) == expected


def test_a_file_problem_is_told_once_per_command(tmp_path, capsys):
    """`flytomo init` opens each scan more than once (config check, planner): the first
    file's warning appears once, and the same problem in the other file is counted at the end."""
    for i in range(2):
        write_nxtomo_nxtomomill(tmp_path / f"s{i}.nxs", HALF, control=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["init", str(tmp_path / "s*.nxs"), "--out", str(tmp_path / "exp")]) == 0
    told = [str(w.message) for w in caught if "taken as alignment frames" in str(w.message)]
    assert len(told) == 1 and "s0.nxs" in told[0]
    summary = [line for line in capsys.readouterr().err.splitlines() if "likewise" in line]
    assert len(summary) == 1 and summary[0].startswith("flytomo: warning: 1 more file(s) likewise: no ")
    assert "taken as alignment frames" in summary[0]


# ------------------------------------------------------------------ refused with one line


def _counts_without_flats(p: Path) -> Path:
    return write_dxchange_tomopy(p, HALF, white=False)


def _angle_units(p: Path) -> Path:
    write_dxchange_tomopy(p, HALF)
    with h5py.File(p, "r+") as f:
        f["exchange/theta"].attrs["units"] = "steps"
    return p


def _float_counts_without_flats(p: Path) -> Path:
    write_dxchange_tomopy(p, HALF, white=False)
    with h5py.File(p, "r+") as f:
        data = f["exchange/data"][:].astype(np.float32)
        del f["exchange/data"]
        f["exchange/data"] = data
    return p


def _unknown_filter(p: Path) -> Path:
    """Frames compressed by a filter neither h5py nor hdf5plugin decodes (LZO, 305)."""
    write_dxchange_tomopy(p, HALF)
    with h5py.File(p, "r+") as f:
        data = f["exchange/data"][:]
        del f["exchange/data"]
        ds = f.create_dataset("exchange/data", shape=data.shape, dtype=data.dtype, chunks=(1, *data.shape[1:]),
                              compression=305, allow_unknown_filter=True)
        for i, frame in enumerate(data):
            ds.id.write_direct_chunk((i, 0, 0), frame.tobytes())
    return p


def _missing_vds_source(p: Path) -> Path:
    """nxtomomill writes virtual datasets pointing at the raw detector files; one is gone."""
    write_nxtomo_nxtomomill(p, HALF)
    with h5py.File(p, "r+") as f:
        det = f["entry0000/instrument/detector"]
        shape, dtype = det["data"].shape, det["data"].dtype
        del f["entry0000/data/data"], det["data"]
        layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
        layout[:] = h5py.VirtualSource("raw_frames_0000.h5", "entry_0000/measurement/pcoedge", shape=shape, dtype=dtype)
        det.create_virtual_dataset("data", layout)
    return p


def _bad_image_key(p: Path) -> Path:
    write_nxtomo_nxtomomill(p, HALF)
    with h5py.File(p, "r+") as f:
        f["entry0000/instrument/detector/image_key_control"][5] = 7
    return p


def _radians_labelled_degrees(p: Path) -> Path:
    return write_dxchange_tomopy(p, HALF, theta=np.deg2rad(HALF), theta_units="deg")


def _degrees_labelled_radians(p: Path) -> Path:
    return write_dxchange_tomopy(p, FULL, theta=FULL, theta_units="rad")


def _limited_radians_labelled_degrees(p: Path) -> Path:
    """Blind probe O: 150° in radians labelled degrees went through, exit 0, 9.26 dB."""
    return write_dxchange_tomopy(p, HALF[HALF < 150], theta=np.deg2rad(HALF[HALF < 150]), theta_units="deg")


def _limited_degrees_labelled_radians(p: Path) -> Path:
    return write_dxchange_tomopy(p, HALF[HALF < 150], theta=HALF[HALF < 150], theta_units="rad")


def _one_angle(p: Path) -> Path:
    return write_dxchange_tomopy(p, HALF, theta=np.zeros_like(HALF))


def _flats_and_darks_swapped(p: Path) -> Path:
    write_dxchange_tomopy(p, HALF)
    with h5py.File(p, "r+") as f:
        f.move("exchange/data_white", "exchange/white")
        f.move("exchange/data_dark", "exchange/data_white")
        f.move("exchange/white", "exchange/data_dark")
    return p


REFUSED = {
    "radians-labelled-degrees": (_radians_labelled_degrees, r"'/exchange/theta' says its angles are in 'deg' but they "
                                                            r"span 3\.1\d*, a half turn in radians"),
    "degrees-labelled-radians": (_degrees_labelled_radians, r"in 'rad' but they span 35\d\.?\d*, a whole turn in degrees"),
    "limited-radians-labelled-degrees": (_limited_radians_labelled_degrees, r"in 'deg' but they span 2\.\d+: \d+ "
                                         r"projections over 2\.\d+° is no tomography scan, 14\d° in radians is one"),
    "limited-degrees-labelled-radians": (_limited_degrees_labelled_radians, r"in 'rad' but they span 14\d\.?\d*: \d+ "
                                         r"projections over \d+ half turns is no tomography scan"),
    "one-angle": (_one_angle, r"all \d+ projection\(s\) are at 0°"),
    # the axis search reads the rows first: the file's problem alone, no fallback warning before it
    "flats-and-darks-swapped": (_flats_and_darks_swapped, r"flat field not above the dark level in 100%"),
    "counts-without-flats": (_counts_without_flats, r"no flat fields \('/exchange/data_white' is missing\), .*uint16 counts"),
    "angle-units": (_angle_units, r"'/exchange/theta' has units 'steps', expected degrees or radians"),
    "float-counts-without-flats": (_float_counts_without_flats, r"no flat fields .*neither transmissions"),
    "unknown-filter": (_unknown_filter, r"'/exchange/data' is compressed with HDF5 filter 305 .*cannot decode"),
    "missing-vds-source": (_missing_vds_source, r"virtual and its source file 'raw_frames_0000\.h5' is missing"),
    "bad-image-key": (_bad_image_key, r"1 frames in '/entry0000/instrument/detector/image_key_control' have a key other"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_foreign_problem_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case):
    make, message = REFUSED[case]
    path = make(tmp_path / f"{case}.h5")
    out = tmp_path / "v.zarr"
    capsys.readouterr()
    assert main(["recon", str(path), "--out", str(out), "--method", "fbp", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"flytomo: error: {path}: "), err
    assert re.search(message, err[0]), err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no store, no partial


def test_init_and_recon_as_commands_on_foreign_files(tmp_path, monkeypatch):
    """The installed command: `flytomo init` over a folder of foreign files, and exit code 2."""
    raw = tmp_path / "raw"
    raw.mkdir()
    write_dxchange_tomopy(raw / "a.h5", HALF)
    write_nxtomo_nxtomomill(raw / "b.h5", HALF)
    write_fxi_beamline(raw / "c.h5", FXI_ANGLES)
    _counts_without_flats(tmp_path / "bad.h5")

    monkeypatch.chdir(tmp_path)
    flytomo = cli_in_process

    r = flytomo("init", "raw/*.h5", "--out", "exp", "--method", "fbp")
    assert r.returncode == 0 and "problem" not in r.stdout, r.stdout + r.stderr
    assert (tmp_path / "exp" / "experiment.yaml").is_file()
    r = flytomo("recon", "bad.h5", "--out", "v.zarr", "--method", "fbp")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "bad.h5: no flat fields" in r.stderr
    assert not (tmp_path / "v.zarr").exists()


def test_experiment_of_timeless_foreign_files_is_analysed_in_scan_order(tmp_path, monkeypatch):
    """FXI files that record no scan time: `flytomo run` analyses them against the scan order
    (empty times, plots by index); with a temperature log `flytomo check` refuses in one line."""
    import pandas as pd

    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(2):
        write_fxi_beamline(raw / f"scan_{i}.h5", FXI_ANGLES)
    (raw / "log.csv").write_text("time_s,temperature_C\n0,25\n100,30\n")

    monkeypatch.chdir(tmp_path)
    flytomo = cli_in_process

    r = flytomo("init", "raw/*.h5", "--out", "exp", "--method", "fbp", "--temperature", "raw/log.csv")
    cfg = tmp_path / "exp" / "experiment.yaml"
    r = flytomo("check", str(cfg))
    assert r.returncode == 2 and "scan_0.h5 (+1 more) records no time" in r.stdout + r.stderr, r.stdout + r.stderr
    r = flytomo("run", str(cfg), "--no-progress")  # refused before any reconstruction (was: after it, in the analysis)
    assert r.returncode == 2 and "scan_0.h5 (+1 more) records no time" in r.stderr and "--no-analysis" in r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "exp" / "recon" / "experiment.zarr").exists()  # nothing reconstructed, no empty store left
    r = flytomo("run", str(cfg), "--no-progress", "--no-analysis")  # reconstructed; analysed without the config's log
    assert r.returncode == 0, r.stderr
    r = flytomo("analyze", "exp/recon/experiment.zarr", "--out", "an", "-T", "none")
    assert r.returncode == 0 and (tmp_path / "an" / "crack_table.csv").is_file(), r.stderr
    cfg.write_text(re.sub(r"temperature_log: .*", "temperature_log: null", cfg.read_text()))
    r = flytomo("run", str(cfg), "--no-progress")
    assert r.returncode == 0, r.stdout + r.stderr
    table = pd.read_csv(tmp_path / "exp" / "recon" / "experiment_analysis" / "crack_table.csv")
    assert list(table["scan_index"]) == [0, 1] and table["mid_time_s"].isna().all()
    assert (table["status"] == "ok").all()
    assert (tmp_path / "exp" / "recon" / "experiment_analysis" / "crack_fraction_vs_time.png").stat().st_size > 10_000


class _TinyScan:
    """A reader of 3 projections: too few for the axis search."""

    path, metadata, shape = Path("tiny.h5"), {}, (3, 2, 16)
    angles_deg = np.array([0.0, 60.0, 120.0])

    def read(self, z0, z1):
        from recon.io.scan import RawChunk

        return RawChunk(np.full((3, z1 - z0, 16), 500.0, np.float32), np.full((1, z1 - z0, 16), 1000.0, np.float32),
                        np.zeros((1, z1 - z0, 16), np.float32))


def test_center_default_is_found_then_the_middle(tmp_path):
    """The axis is found unless given; a center in the metadata is not taken (no reader reads
    one; the README said a file's recorded center was)."""
    from recon.io.scan_geometry import scan_geometry

    reader = open_scan(write_dxchange_tomopy(tmp_path / "dx.h5", HALF))
    middle = (reader.shape[2] - 1) / 2
    assert scan_geometry(reader, center="middle").center == middle
    found = scan_geometry(reader, center="auto").center
    assert scan_geometry(reader).center == pytest.approx(found)
    reader.metadata["center"] = 30.25
    assert scan_geometry(reader).center == pytest.approx(found)
    assert scan_geometry(reader, center=30.25).center == 30.25
    with pytest.warns(UserWarning, match="tiny.h5: rotation axis not found.*middle column 7.5"):
        assert scan_geometry(_TinyScan()).center == 7.5


def test_each_entry_of_a_series_file_is_a_scan(tmp_path):
    """An NXtomo file with several entries holds a series: FILE::ENTRY opens one (no
    warning), `flytomo init` on the file makes one scan per entry, and `flytomo run`
    reconstructs each into its own time point."""
    import yaml

    from recon.io.readers import scan_entries, scan_label

    path = write_nxtomo_nxtomomill(tmp_path / "series.nx", HALF, entries=3)
    refs = scan_entries(path)
    assert refs == [f"{path}::entry{k:04d}" for k in range(3)]
    assert scan_label(refs[2]) == "series_entry0002"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = open_scan(refs[2])
    assert third.shape == (N_ANGLES, N_ROWS, N_COLS)
    assert third.metadata["scan_time"] - open_scan(refs[0]).metadata["scan_time"] == 2 * 86400
    with pytest.raises(FlytomoError, match=r"no scan entry 'entry0009' \(entries: entry0000, entry0001, entry0002\)"):
        open_scan(f"{path}::entry0009")
    single = write_nxtomo_nxtomomill(tmp_path / "single.nx", HALF)
    assert scan_entries(single) == [str(single)]
    dx = write_dxchange_tomopy(tmp_path / "dx.h5", HALF)
    with pytest.raises(FlytomoError, match="names an NXtomo entry, but this is a dxchange file"):
        open_scan(f"{dx}::entry0000")

    exp = tmp_path / "exp"
    assert main(["init", str(path), "--out", str(exp), "--method", "fbp"]) == 0
    cfg = yaml.safe_load((exp / "experiment.yaml").read_text())
    cfg["analysis"]["enabled"] = False
    (exp / "experiment.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["run", str(exp / "experiment.yaml"), "--no-progress"]) == 0
    store = open_volume(exp / "recon" / "experiment.zarr")[0]
    assert store.shape[0] == 3
    first, last = np.asarray(store[0]), np.asarray(store[2])
    np.testing.assert_array_equal(first, last)  # the entries hold the same frames here
    # one entry through `flytomo recon FILE::ENTRY` is that time point of the run
    np.testing.assert_allclose(np.asarray(store[1]), recon_fbp(refs[1], tmp_path / "one.zarr"), atol=1e-6)
