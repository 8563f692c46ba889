"""`flytomo enhance`: a network on a reconstruction already made (TIFF, .npy, OME-Zarr)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tifffile

from hpc.cli import main
from recon.io import open_volume
from recon.metrics import psnr
from recon.weights import ModelDomainWarning, load_model, seed_checkpoint_path

from tests.cli import cli_in_process, sigterm_after_a_chunk


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    d = tmp_path_factory.mktemp("enh")
    path = d / "scan.h5"
    assert main(["simulate", str(path), "--phantom", "cracked", "--size", "96", "--ndim", "3",
                 "--angles", "60", "--photons", "2000", "--seed", "3"]) == 0
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return cli_in_process(*args)


def test_enhancing_a_recon_volume_equals_the_rrdb_method(scan, tmp_path):
    """modified MLEM from `flytomo recon`, then `flytomo enhance` (input kind read from the
    store) == `flytomo recon --method rrdb --rrdb-blend none`: the same two stages, bit for bit
    (enhance has one first stage, so one network: the default rrdb method adds a second)."""
    mm, rr, en = tmp_path / "mm.zarr", tmp_path / "rr.zarr", tmp_path / "en.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelDomainWarning)  # 96-px slices: below the training sizes
        for out, method in ((mm, ["mlem-flyscan"]), (rr, ["rrdb", "--rrdb-blend", "none"])):
            assert main(["recon", str(scan), "--out", str(out), "--method", *method, "--rows", "44:50",
                         "--quiet"]) == 0
        assert main(["enhance", str(mm), "--out", str(en), "--batch", "2", "--quiet"]) == 0
    got, attrs = open_volume(en)
    assert got.shape == (6, 96, 96)
    np.testing.assert_array_equal(got[:], open_volume(rr)[0][:])
    assert attrs["method"] == "rrdb" and attrs["input_kind"] == "mlem-flyscan"
    assert attrs["model"]["weights_sha256"] == open_volume(rr)[1]["model"]["weights_sha256"]
    assert attrs["source"]["method"] == "mlem-flyscan"
    chosen, recon_chose = attrs["network_zoom"], open_volume(rr)[1]["network_zoom"]  # one zoom, judged alike
    assert recon_chose.pop("rows", [44, 50]) == [44, 50] and chosen.pop("rows", [0, 6]) == [0, 6]  # where judged
    assert chosen == recon_chose
    truth = np.load(scan.with_name("scan_truth.npy"))[44:50]
    before = np.mean([psnr(v, t) for v, t in zip(open_volume(mm)[0][:], truth)])
    after = np.mean([psnr(v, t) for v, t in zip(got[:], truth)])
    assert after > before + 0.1, (before, after)  # 96-px slices: +0.24 dB measured
    # a store the network already corrected is refused
    r = run_cli("enhance", str(rr), "--out", str(tmp_path / "twice.zarr"))
    assert r.returncode == 2 and "already corrected" in r.stderr and str(rr) in r.stderr
    assert not (tmp_path / "twice.zarr").exists()
    # a TIFF of a store with a voxel size carries it as Fiji reads it (was: 1 px, no unit)
    tif = tmp_path / "en.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelDomainWarning)
        assert main(["enhance", str(mm), "--out", str(tif), "--quiet"]) == 0
    import tifffile

    with tifffile.TiffFile(tif) as t:
        np.testing.assert_array_equal(t.asarray(), got[:])
        px_um = open_volume(mm)[1]["metadata"]["pixel_size_nm"] / 1000
        assert t.imagej_metadata["unit"] == "um" and t.imagej_metadata["spacing"] == pytest.approx(px_um)
        num, den = t.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(px_um, rel=1e-3)
        # the record a store keeps, in ImageJ's Info (was: none for a TIFF or .npy output)
        record = json.loads(t.imagej_metadata["Info"])
        assert record["input_kind"] == "mlem-flyscan" and record["source_method"] == "mlem-flyscan"
        assert record["network_zoom"]["zoom"] == chosen["zoom"] and record["zero_level"] == 0.0
        assert record["model"]["weights_sha256"]
    # --input-kind against the store's own method: refused (was: the other kind's network, exit 0)
    r = run_cli("enhance", str(mm), "--out", str(tmp_path / "wrong.zarr"), "--input-kind", "fbp")
    assert r.returncode == 2 and "was reconstructed with mlem-flyscan (its attributes say so), not fbp" in r.stderr
    assert not (tmp_path / "wrong.zarr").exists()
    # a plain-MLEM store: no shipped network takes it, and the message says which do
    ml = tmp_path / "ml.zarr"
    assert main(["recon", str(scan), "--out", str(ml), "--method", "mlem", "--iterations", "2", "--rows",
                 "44:46", "--quiet"]) == 0
    r = run_cli("enhance", str(ml), "--out", str(tmp_path / "ml-en.zarr"))
    assert r.returncode == 2 and "no shipped network takes mlem reconstructions" in r.stderr
    assert "--model PATH.safetensors" in r.stderr and r.stderr.count("\n") == 1


def test_amp_in_recon_and_enhance(scan, tmp_path, bf16_cpu):
    """--amp (bfloat16 on the CPU): `recon --method rrdb` and `enhance` give the same volume,
    bit for bit, within 2 % of the float32 one's range but not equal to it, and record it; a
    method without a network refuses the flag."""
    mm, rr, en = tmp_path / "mm.zarr", tmp_path / "rr.zarr", tmp_path / "en.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelDomainWarning)
        assert main(["recon", str(scan), "--out", str(mm), "--rows", "44:47", "--quiet"]) == 0
        assert main(["recon", str(scan), "--out", str(rr), "--method", "rrdb", "--amp",
                     "--rrdb-blend", "none", "--rows", "44:47", "--quiet"]) == 0
        assert main(["enhance", str(mm), "--out", str(en), "--amp", "--quiet"]) == 0
    got, attrs = open_volume(en)
    exact = load_model(None).apply(open_volume(mm)[0][:], zoom=attrs["zoom"])  # 1: a scan too sparse to zoom
    assert attrs["zoom"] == 1.0
    np.testing.assert_array_equal(got[:], open_volume(rr)[0][:])
    assert attrs["amp"] is True and open_volume(rr)[1]["options"]["amp"] is True
    diff = np.abs(got[:] - exact).max() / np.ptp(exact)
    assert 0 < diff < 2e-2, diff
    r = run_cli("recon", str(scan), "--out", str(tmp_path / "f.zarr"), "--method", "fbp", "--amp")
    assert r.returncode == 2 and "method fbp takes no --amp" in r.stderr


def test_recon_records_what_ran_for_the_seed_network(scan, tmp_path):
    """Blind probe AC: a seed: run recorded zoom 'auto' (the seed's network is never zoomed) and
    no first stage; now zoom 1 and the first stage with its options."""
    seed = seed_checkpoint_path()
    if not seed.is_file():
        pytest.skip("../shared/data/seed-model is absent")
    out = tmp_path / "seed.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelDomainWarning)
        assert main(["recon", str(scan), "--out", str(out), "--method", "rrdb", "--model", f"seed:{seed}",
                     "--rows", "44:46", "--quiet"]) == 0
    attrs = open_volume(out)[1]
    assert attrs["options"]["zoom"] == 1.0
    assert [f["method"] for f in attrs["first_stage"]] == ["fbp"] and attrs["model"]["weights"] == str(seed.absolute())


def test_amp_on_a_cpu_without_bfloat16_is_float32_and_says_so(scan, tmp_path, no_bf16_cpu):
    """Blind probe AC: --amp on a CPU without bfloat16 arithmetic ran 6x slower, unsaid. Now it
    warns and runs in float32: the same volume as without --amp, bit for bit."""
    mm, plain, amp = tmp_path / "mm.zarr", tmp_path / "plain.zarr", tmp_path / "amp.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelDomainWarning)
        assert main(["recon", str(scan), "--out", str(mm), "--rows", "44:46", "--quiet"]) == 0
        assert main(["enhance", str(mm), "--out", str(plain), "--quiet"]) == 0
        with pytest.warns(UserWarning, match=r"--amp: this CPU has no bfloat16 arithmetic .* float32 is used"):
            assert main(["enhance", str(mm), "--out", str(amp), "--amp", "--quiet"]) == 0
    got, attrs = open_volume(amp)
    np.testing.assert_array_equal(got[:], open_volume(plain)[0][:])
    assert attrs["amp"] is False  # what ran, not what was asked


def test_self_ensemble_in_recon_and_enhance(scan, tmp_path):
    """--self-ensemble: `recon --method rrdb` and `enhance` give the same volume, bit for bit,
    not the plain one, and record it; a method without a network refuses the flag."""
    mm, rr, en = tmp_path / "mm.zarr", tmp_path / "rr.zarr", tmp_path / "en.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelDomainWarning)
        assert main(["recon", str(scan), "--out", str(mm), "--rows", "44:47", "--quiet"]) == 0
        assert main(["recon", str(scan), "--out", str(rr), "--method", "rrdb", "--self-ensemble",
                     "--rrdb-blend", "none", "--rows", "44:47", "--quiet"]) == 0  # enhance: one network
        assert main(["enhance", str(mm), "--out", str(en), "--self-ensemble", "--quiet"]) == 0
        plain = load_model(None).apply(open_volume(mm)[0][:])
    got, attrs = open_volume(en)
    np.testing.assert_array_equal(got[:], open_volume(rr)[0][:])
    assert attrs["self_ensemble"] is True and open_volume(rr)[1]["options"]["self_ensemble"] is True
    assert np.abs(got[:] - plain).max() > 1e-4 * np.abs(plain).max()
    r = run_cli("recon", str(scan), "--out", str(tmp_path / "f.zarr"), "--method", "fbp", "--self-ensemble")
    assert r.returncode == 2 and "method fbp takes no --self-ensemble" in r.stderr
    r = run_cli("recon", str(scan), "--out", str(tmp_path / "f.zarr"), "--method", "fbp", "--rrdb-blend", "none")
    assert r.returncode == 2 and "method fbp takes no --rrdb-blend" in r.stderr
    r = run_cli("recon", str(scan), "--out", str(tmp_path / "f.zarr"), "--method", "rrdb", "--rrdb-blend-weight", "1")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "blend_weight must be a number between 0 and 1" in r.stderr and not (tmp_path / "f.zarr").exists()


def test_a_folder_of_tiff_slices_in_any_unit(tmp_path):
    """A tomopy-style folder of single-slice TIFFs (here in a unit 1000× attenuation) → one
    multi-page TIFF equal to the network on the stack, in the input's unit."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:80, :80]
    disk = ((yy - 40) ** 2 + (xx - 40) ** 2 < 30 ** 2).astype(np.float32)
    stack = np.stack([disk * (0.02 + 0.002 * i) + rng.normal(0, 0.004, disk.shape) for i in range(3)])
    folder = tmp_path / "recon"
    folder.mkdir()
    for i, s in enumerate(stack):
        tifffile.imwrite(folder / f"recon_{i:05d}.tiff", (1000 * s).astype(np.float32))
    (folder / "notes.txt").write_text("not a slice")
    out = tmp_path / "enhanced.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelDomainWarning)
        assert main(["enhance", str(folder), "--out", str(out), "--input-kind", "fbp", "--quiet"]) == 0
        want = load_model(None, input_kind="fbp").apply(stack)
    got = tifffile.imread(out)
    assert got.shape == (3, 80, 80) and got.dtype == np.float32
    np.testing.assert_allclose(got / 1000, want, rtol=1e-4, atol=1e-6 * float(np.abs(want).max()))
    # the same slices named by a glob, into .npy
    npy = tmp_path / "e.npy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelDomainWarning)
        assert main(["enhance", str(folder / "recon_*.tiff"), "--out", str(npy), "--input-kind", "fbp",
                     "--quiet"]) == 0
    np.testing.assert_array_equal(np.load(npy), got)
    # the same slices in one file written a page at a time (tifffile stores a series per page)
    pages = tmp_path / "pages.tif"
    with tifffile.TiffWriter(pages) as w:
        for s in stack:
            w.write((1000 * s).astype(np.float32))
    with tifffile.TiffFile(pages) as tif:
        assert len(tif.series) == 3
    paged = tmp_path / "paged.npy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelDomainWarning)
        assert main(["enhance", str(pages), "--out", str(paged), "--input-kind", "fbp", "--quiet"]) == 0
    np.testing.assert_array_equal(np.load(paged), got)


def test_a_tiffs_voxel_size_is_kept(tmp_path):
    """A blind probe: a Fiji stack of 21.6 nm voxels came back as a bare TIFF (resolution 1)
    and a unit-less store. The size ImageJ or OME-XML records is carried to .tif and .zarr."""
    from recon.io import open_volume

    from hpc.commands.enhance import tiff_pixel_size_nm

    yy, xx = np.mgrid[:64, :64]
    stack = np.stack([((yy - 32) ** 2 + (xx - 32) ** 2 < 24 ** 2) * 0.02] * 2).astype(np.float32)
    fiji, ome, bare = tmp_path / "fiji.tif", tmp_path / "ome.ome.tif", tmp_path / "bare.tif"
    tifffile.imwrite(fiji, stack, imagej=True, resolution=(1 / 0.0216, 1 / 0.0216),
                     metadata={"unit": "um", "spacing": 0.0216, "axes": "ZYX"})
    tifffile.imwrite(ome, stack, metadata={"axes": "ZYX", "PhysicalSizeX": 30.0, "PhysicalSizeXUnit": "nm"})
    tifffile.imwrite(bare, stack, resolution=(72, 72))  # a bare TIFF's dpi is no pixel size
    assert tiff_pixel_size_nm(fiji) == pytest.approx(21.6) and tiff_pixel_size_nm(ome) == pytest.approx(30.0)
    assert tiff_pixel_size_nm(bare) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelDomainWarning)
        for out in ("e.tif", "e.zarr"):
            assert main(["enhance", str(fiji), "--out", str(tmp_path / out), "--input-kind", "mlem-flyscan",
                         "--quiet"]) == 0
    with tifffile.TiffFile(tmp_path / "e.tif") as t:
        assert t.is_imagej and t.imagej_metadata["unit"] == "um"
        assert t.imagej_metadata["spacing"] == pytest.approx(0.0216)
    assert tiff_pixel_size_nm(tmp_path / "e.tif") == pytest.approx(21.6)
    _, attrs = open_volume(tmp_path / "e.zarr")
    assert attrs["source"]["metadata"]["pixel_size_nm"] == pytest.approx(21.6)
    import json
    ms = json.loads((tmp_path / "e.zarr" / ".zattrs").read_text())["multiscales"][0]
    assert ms["axes"][0]["unit"] == "nanometer"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == pytest.approx([21.6] * 3)


def test_a_tiff_of_pages_of_different_sizes_is_refused(tmp_path):
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as w:
        w.write(np.ones((64, 64), np.float32))
        w.write(np.ones((32, 32), np.float32))
    r = run_cli("enhance", str(path), "--out", str(tmp_path / "out.tif"), "--input-kind", "fbp")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "mixed.tif: holds 2 images of shapes (32, 32), (64, 64)" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mixed.tif"]


def test_an_integer_export_is_enhanced_from_its_zero_level(tmp_path):
    """FBP slices exported as 16- and 8-bit by a linear map of their range put zero attenuation
    30 % of the way up: that level is found from the outer ring, taken off and put back, and the
    output, mapped back, scores as the float slices' does (23.92 dB); with --zero-level 0 the
    network sees a grey background (21.86). An export whose air is at 0 is left as it is."""
    from recon.geometry import ScanGeometry
    from recon.methods import reconstruct
    from recon.phantoms import make_phantom
    from recon.simulate import line_integrals_from_counts, simulate_flyscan

    truth = make_phantom("cracked", 128, seed=5, ndim=3)[60:64]
    angles = np.arange(90) * 2.0
    li = line_integrals_from_counts(simulate_flyscan(truth, angles, 2.0, 3000, seed=1))
    fbp = reconstruct(li, ScanGeometry.create(angles, 128, blur_angle_deg=2.0), "fbp")
    lo, hi = float(fbp.min()), float(fbp.max())

    def enhanced(volume, *flags, bits=None) -> float:
        src, out = tmp_path / f"in{bits}.tif", tmp_path / "out.tif"
        top = 0 if bits is None else 2 ** bits - 1
        tifffile.imwrite(src, volume if bits is None else
                         np.rint((volume - lo) / (hi - lo) * top).astype(f"uint{bits}"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["enhance", str(src), "--out", str(out), "--input-kind", "fbp", "--overwrite",
                         "--quiet", *flags]) == 0
        notes.extend(str(w.message) for w in caught if "zero attenuation" in str(w.message))
        got = tifffile.imread(out)
        got = got if bits is None else got / top * (hi - lo) + lo
        return float(np.mean([psnr(a, b) for a, b in zip(got, truth)]))

    notes: list[str] = []
    reference = enhanced(fbp)
    assert not notes
    with tifffile.TiffFile(tmp_path / "out.tif") as t:  # the record, in the description where no voxel size
        assert t.shaped_metadata[0]["flytomo"]["zero_level"] == 0.0  # one JSON, not a JSON string in one
    assert abs(enhanced(fbp, bits=16) - reference) < 0.02 and "outer ring sits at 15446.5 (the 95th percentile" in notes[0]
    assert abs(enhanced(fbp, bits=8) - reference) < 0.05
    # a signed 16-bit export (air below 0): found the same way
    src, out = tmp_path / "signed.tif", tmp_path / "signed_out.tif"
    tifffile.imwrite(src, np.rint((fbp - lo) / (hi - lo) * 65535 - 32768).astype(np.int16))
    assert main(["enhance", str(src), "--out", str(out), "--input-kind", "fbp", "--quiet"]) == 0
    signed = (tifffile.imread(out) + 32768) / 65535 * (hi - lo) + lo
    assert abs(float(np.mean([psnr(a, b) for a, b in zip(signed, truth)])) - reference) < 0.02
    # the same export with air slices above and below, as a stack of a whole particle has: the level
    # is judged on the slices holding the sample (blind probe M: 12 air slices of 20 read as "not air")
    air = np.random.default_rng(0).normal(0, float(np.std(fbp[:, :, :8])), (12, 128, 128)).astype(np.float32)
    src, out = tmp_path / "tall.tif", tmp_path / "tall_out.tif"
    tifffile.imwrite(src, np.rint(np.clip((np.concatenate([air[:6], fbp, air[6:]]) - lo) / (hi - lo), 0, 1)
                                  * 65535).astype(np.uint16))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["enhance", str(src), "--out", str(out), "--input-kind", "fbp", "--quiet"]) == 0
    assert any("integer values whose outer ring sits at 1544" in str(w.message) for w in caught), \
        [str(w.message) for w in caught]
    tall = tifffile.imread(out)[6:10] / 65535 * (hi - lo) + lo
    assert abs(float(np.mean([psnr(a, b) for a, b in zip(tall, truth)])) - reference) < 0.05
    # a float input whose air sits below 0: a warning naming the level, nothing taken off
    src = tmp_path / "below.npy"
    np.save(src, fbp - 0.01)
    with pytest.warns(UserWarning, match=r"outer ring of the slices sits at -0\.0099\d* .*--zero-level -0\.0099"):
        assert main(["enhance", str(src), "--out", str(tmp_path / "below_out.npy"), "--input-kind", "fbp",
                     "--quiet"]) == 0
    assert enhanced(fbp, "--zero-level", "0", bits=16) < reference - 1.5
    notes.clear()
    lo = 0.0  # air at 0: an export of the clipped slices needs nothing taken off
    enhanced(np.clip(fbp, 0, None), bits=16)
    assert not notes
    # a crop the sample fills, air at 0: its outer ring is sample, not air (it was taken off: -10 dB
    # in the probe's 170x256 crop); said, nothing taken off, and it scores as the float crop does
    crop, truth = np.clip(fbp, 0, None)[:2, 34:94, 34:94], truth[:2, 34:94, 34:94]
    hi = float(crop.max())
    cropped = enhanced(crop, bits=16)
    assert len(notes) == 1 and "in16.tif: the outer ring" in notes[0] and "so it is not air" in notes[0]
    assert abs(cropped - enhanced(crop)) < 0.05


def test_unpadded_slice_numbers_keep_their_order(tmp_path):
    """slice_1 … slice_12 (no zero padding): slice_10 comes after slice_9, not after slice_1."""
    yy, xx = np.mgrid[:32, :32]
    disk = ((yy - 16) ** 2 + (xx - 16) ** 2 < 12 ** 2).astype(np.float32)
    folder = tmp_path / "slices"
    folder.mkdir()
    for i in range(1, 13):
        tifffile.imwrite(folder / f"slice_{i}.tif", disk * (0.01 * i))
    out = tmp_path / "e.npy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelDomainWarning)
        assert main(["enhance", str(folder), "--out", str(out), "--input-kind", "fbp", "--quiet"]) == 0
    means = np.load(out).mean(axis=(1, 2))
    assert np.all(np.diff(means) > 0), means


def test_fbp_slices_take_the_network_their_size_fits(tmp_path):
    """--input-kind fbp without --model: the 512²-trained network on 192-px slices, the 128-px
    one on 64-px slices (recon.weights.default_model_spec)."""
    for n, name in ((192, "rrdb-fbp-blend"), (64, "rrdb-fbp")):
        img = np.zeros((n, n), np.float32)
        yy, xx = np.mgrid[:n, :n]
        img[(yy - n / 2) ** 2 + (xx - n / 2) ** 2 < (0.4 * n) ** 2] = 0.02
        tifffile.imwrite(tmp_path / f"s{n}.tif", img)
        out = tmp_path / f"e{n}.zarr"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ModelDomainWarning)
            assert main(["enhance", str(tmp_path / f"s{n}.tif"), "--out", str(out), "--input-kind", "fbp",
                         "--quiet"]) == 0
        assert open_volume(out)[1]["model"]["name"] == name


def test_nan_pixels_are_taken_as_zero_and_stay_nan_with_a_warning(tmp_path):
    img = np.zeros((64, 64), np.float32)
    img[16:48, 16:48] = 0.05
    img[:2] = np.nan  # e.g. outside a reconstruction circle
    src = tmp_path / "slice.npy"
    np.save(src, img)
    out = tmp_path / "out.tif"
    with pytest.warns(UserWarning, match="128 NaN/infinite pixel"):
        assert main(["enhance", str(src), "--out", str(out), "--input-kind", "mlem-flyscan", "--quiet"]) == 0
    got = tifffile.imread(out)
    assert got.shape == (64, 64) and np.all(np.isnan(got[:2])) and np.all(np.isfinite(got[2:]))


def test_the_seed_network_on_the_real_slice(tmp_path):
    """The seed authors' network (FBP input) on the real beamline slice, as bench/real_slice.py."""
    seed = seed_checkpoint_path()
    img = seed.with_name("img_test.tiff")
    if not (seed.is_file() and img.is_file()):
        pytest.skip("../shared/data/seed-model/img_test.tiff is absent")
    out = tmp_path / "seed.npy"
    assert main(["enhance", str(img), "--out", str(out), "--model", f"seed:{seed}", "--tile", "256",
                 "--quiet"]) == 0
    x = tifffile.imread(img).astype(np.float32)
    want = load_model(f"seed:{seed}").apply(x[None])[0]
    got = np.load(out)
    assert got.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))


@pytest.mark.parametrize("make,args,message", [
    (lambda d: np.save(d / "in.npy", np.ones((64, 64), np.float32)), [], "say what reconstruction this is"),
    (lambda d: np.save(d / "in.npy", np.ones((64, 64, 3), np.float32)), ["--input-kind", "fbp"],
     "too small"),
    (lambda d: np.save(d / "in.npy", np.ones((2, 3, 64, 64), np.float32)), ["--input-kind", "fbp"],
     "expected one slice (y, x) or a stack (z, y, x)"),
    (lambda d: (d / "in.npy").write_bytes(b"junk"), ["--input-kind", "fbp"], "not a readable .npy"),
    (lambda d: np.save(d / "in.npy", np.ones((64, 64), np.float32)),
     ["--input-kind", "mlem-flyscan", "--model", "seed:"], "corrects 'fbp' reconstructions"),
    (lambda d: np.save(d / "in.npy", np.ones((64, 64), np.float32)), ["--input-kind", "fbp", "--zero-level", "air"],
     "--zero-level must be 'auto' or a number, got 'air'"),
    (lambda d: np.save(d / "in.npy", np.full((64, 64), 1e41)), ["--input-kind", "fbp"],
     "values up to 1e+41 are beyond float32's range"),
    (lambda d: np.save(d / "in.npy", np.full((2, 64, 64), np.nan, np.float32)), ["--input-kind", "fbp"],
     "in.npy: no finite pixel (all NaN or infinite): nothing to enhance"),  # was: exit 0, an all-NaN output
    (lambda d: tifffile.imwrite(d / "in.tif", np.stack([np.full((64, 64), v, np.float32) for v in (0, .01, .02)], -1),
                                photometric="rgb"), ["--input-kind", "fbp"],
     "in.tif: a colour image (its red, green and blue differ)"),  # was: "slices of 64x3 pixels are too small"
    (lambda d: np.save(d / "in.npy", np.ones((64, 64), np.float32)), ["--input-kind", "fbp", "--device", "tpu"],
     "unknown device 'tpu'; use cpu, cuda or cuda:N"),
    (lambda d: np.save(d / "in.npy", np.ones((64, 64), np.float32)), ["--input-kind", "fbp", "--device", "cuda:99"],
     "device cuda:99 asked for, but torch sees"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, make, args, message):
    if "seed:" in args and not seed_checkpoint_path().is_file():
        pytest.skip("../shared/data/seed-model is absent")
    make(tmp_path)
    out = tmp_path / "out.tif"
    src = next(tmp_path.iterdir())
    r = run_cli("enhance", str(src), "--out", str(out), *args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


def test_an_existing_output_is_kept_without_overwrite(tmp_path):
    np.save(tmp_path / "in.npy", np.ones((64, 64), np.float32))
    (tmp_path / "out.tif").write_bytes(b"precious")
    r = run_cli("enhance", str(tmp_path / "in.npy"), "--out", str(tmp_path / "out.tif"), "--input-kind", "fbp")
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert (tmp_path / "out.tif").read_bytes() == b"precious"


def test_overwrite_never_replaces_a_folder_that_is_no_store(tmp_path):
    """`--out d.npy --overwrite` where d.npy is a folder of the user's: kept, one line, exit 2
    (was: deleted); the input itself as the output is refused."""
    np.save(tmp_path / "in.npy", np.ones((64, 64), np.float32))
    folder = tmp_path / "d.npy"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    for out, message in ((folder, "is a folder and not a zarr store"), (tmp_path / "in.npy", "is the input")):
        r = run_cli("enhance", str(tmp_path / "in.npy"), "--out", str(out), "--input-kind", "fbp", "--overwrite")
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert (folder / "notes.txt").read_text() == "keep"


def test_a_grey_png_slice_is_the_same_slice_as_a_tiff(tmp_path):
    """An 8-bit grey PNG, the same grey stored as RGBA (as matplotlib's imsave writes it) and a
    16-bit PNG give the network's output bit for bit as the same integers in a TIFF; a colour
    PNG is refused in one line, exit 2, nothing written."""
    import imageio.v3 as iio
    from recon.phantoms import make_phantom

    img8 = np.rint(make_phantom("cracked", 64, seed=2) / 0.02 * 200).clip(0, 255).astype(np.uint8)
    img16 = img8.astype(np.uint16) * 257

    def enhanced(src) -> np.ndarray:
        out = tmp_path / "out.npy"
        assert main(["enhance", str(src), "--out", str(out), "--input-kind", "fbp", "--overwrite", "--quiet"]) == 0
        return np.load(out)

    for name, img, stored in (("g.png", img8, img8), ("rgba.png", img8, np.dstack([img8] * 3 + [np.full_like(img8, 255)])),
                              ("g16.png", img16, img16)):
        tifffile.imwrite(tmp_path / "ref.tif", img)
        iio.imwrite(tmp_path / name, stored)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ModelDomainWarning)  # 64-px slices
            reference, got = enhanced(tmp_path / "ref.tif"), enhanced(tmp_path / name)
        assert got.shape == (64, 64) and np.array_equal(got, reference), name
    colour = np.dstack([img8, img8 // 2, 255 - img8])
    iio.imwrite(tmp_path / "colour.png", colour)
    r = run_cli("enhance", str(tmp_path / "colour.png"), "--out", str(tmp_path / "c.tif"), "--input-kind", "fbp")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "colour.png: a colour image" in r.stderr, r.stderr
    assert not (tmp_path / "c.tif").exists()
    (tmp_path / "junk.png").write_bytes(b"not an image")
    r = run_cli("enhance", str(tmp_path / "junk.png"), "--out", str(tmp_path / "c.tif"), "--input-kind", "fbp")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "junk.png: not a readable PNG" in r.stderr, r.stderr
    assert not (tmp_path / "c.tif").exists()


def test_a_tiff_of_separate_colour_planes_is_read_as_slices_with_a_warning(tmp_path):
    """tifffile writes a stack of 3 slices as one RGB picture with separate planes: read as the
    3 slices it most likely is; said for integers (a colour picture stored so would be read the
    same way), not for floats (blind probe N: a warning every run on its float stacks)."""
    from hpc.commands.enhance import read_reconstruction

    stack = np.stack([np.full((64, 64), v, np.float32) for v in (0.0, 0.01, 0.02)])
    tifffile.imwrite(tmp_path / "planes.tif", (stack * 1e4).astype(np.uint16), photometric="rgb",
                     planarconfig="separate")
    with pytest.warns(UserWarning, match=r"planes\.tif: stored as one RGB picture with separate colour planes, "
                                         r"read as 3 slices"):
        vol, _, single = read_reconstruction(str(tmp_path / "planes.tif"))
    assert not single
    np.testing.assert_array_equal(np.asarray(vol), (stack * 1e4).astype(np.uint16))
    tifffile.imwrite(tmp_path / "floats.tif", stack, photometric="rgb", planarconfig="separate")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vol, _, _ = read_reconstruction(str(tmp_path / "floats.tif"))
    np.testing.assert_array_equal(np.asarray(vol), stack)


def test_a_bare_zarr_array_is_named_as_such(tmp_path):
    import subprocess
    import sys

    import zarr

    zarr.save_array(str(tmp_path / "plain.zarr"), np.zeros((2, 16, 16), np.float32))
    r = subprocess.run([sys.executable, "-m", "hpc.cli", "enhance", str(tmp_path / "plain.zarr"), "--out",
                        str(tmp_path / "o.zarr"), "--input-kind", "fbp"], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "is a bare zarr array of shape (2, 16, 16), not an OME-Zarr volume" in r.stderr


def test_an_integer_input_comes_back_as_float32_and_the_summary_says_so(tmp_path, capsys):
    """A blind probe: a uint16 stack came back float32 without a word."""
    from recon.phantoms import make_phantom

    img16 = np.rint(make_phantom("cracked", 64, seed=2) / 0.02 * 20000).clip(0, 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", img16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelDomainWarning)  # 64-px slices
        assert main(["enhance", str(tmp_path / "in.tif"), "--out", str(tmp_path / "out.tif"), "--input-kind", "fbp",
                     "--no-progress"]) == 0
    assert tifffile.imread(tmp_path / "out.tif").dtype == np.float32
    assert "float32 from uint16 input" in capsys.readouterr().err


def test_bad_zoom_flags_are_one_line_exit_2(scan, tmp_path):
    """--rrdb-zoom / --zoom outside 'auto' or 1-4: one line naming the flag, exit 2, nothing written."""
    r = run_cli("recon", str(scan), "--out", str(tmp_path / "r.zarr"), "--method", "rrdb", "--rrdb-zoom", "9")
    assert r.returncode == 2 and "--rrdb-zoom must be 'auto' or a number from 1 to 4, got '9'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "r.zarr").exists()
    r = run_cli("recon", str(scan), "--out", str(tmp_path / "f.zarr"), "--method", "fbp", "--rrdb-zoom", "2")
    assert r.returncode == 2 and "method fbp takes no --rrdb-zoom" in r.stderr
    r = run_cli("enhance", str(scan), "--out", str(tmp_path / "e.zarr"), "--zoom", "big")
    assert r.returncode == 2 and "--zoom must be 'auto' or a number from 1 to 4, got 'big'" in r.stderr
    from hpc.commands import zoom_flag

    assert zoom_flag("AUTO", "--zoom") == zoom_flag(" Auto", "--zoom") == "auto" and zoom_flag("1.5", "--zoom") == 1.5


def test_zoom_summary_names_the_slices_at_each_zoom():
    from hpc.commands import zoom_summary

    line = zoom_summary([1.5, 1.0, 1.5, 1.5])
    assert line.startswith("network zoom: 3 of 4 slice(s) at 1.5, 1 of 4 slice(s) at 1 ")
    assert "compare scans at one zoom" in line and "\n" not in line
    assert zoom_summary([2.0, 2.0]) == "network zoom 2 (given): every slice at this zoom"


def test_enhance_says_which_zoom_it_chose(tmp_path):
    """A quiet 128-px slice beside an empty one, zoom auto: one zoom for the volume, judged on the
    slice with material, said in one line; the output equals the network at 1.5 on the first and
    the input on the empty one."""
    yy, xx = np.mgrid[:128, :128] - 63.5
    vol = np.stack([(yy ** 2 + xx ** 2 < 50 ** 2) * np.float32(0.02), np.zeros((128, 128), np.float32)])
    np.save(tmp_path / "v.npy", vol)
    r = run_cli("enhance", str(tmp_path / "v.npy"), "--out", str(tmp_path / "o.npy"), "--input-kind", "mlem-flyscan")
    assert r.returncode == 0, r.stderr
    assert "network zoom 1.5 (noise " in r.stderr and ", 1 slice), judged on slices 0:2: every slice at this zoom" in r.stderr
    assert r.stderr.index("network zoom 1.5") < r.stderr.index("wrote ")  # before the work, not after it
    got = np.load(tmp_path / "o.npy")
    np.testing.assert_allclose(got[0], load_model(None).apply(vol[:1], zoom=1.5)[0], atol=1e-6)
    np.testing.assert_array_equal(got[1], vol[1])
    r = run_cli("enhance", str(tmp_path / "v.npy"), "--out", str(tmp_path / "o1.npy"), "--input-kind", "mlem-flyscan",
                "--zoom", "1")
    assert r.returncode == 0 and "network zoom 1 (given): every slice at this zoom" in r.stderr, r.stderr  # said too
    r = run_cli("enhance", str(tmp_path / "v.npy"), "--out", str(tmp_path / "o2.npy"), "--input-kind", "fbp")
    assert r.returncode == 0 and ("network zoom 1 (rrdb-fbp.safetensors was trained on samples up to 128 px across: "
                                  "zoom 1.5 would take these 128-px slices past them)") in r.stderr, r.stderr


def test_an_enhance_stopped_by_sigterm_resumes_bit_for_bit(tmp_path, monkeypatch):
    """A blind probe's open item: enhance into a .zarr began again from nothing after scancel or a
    time limit (hours of network time for a big volume). Now the slabs written stay in the store in
    progress; the same command writes only the rest, equal bit for bit to a run without a stop;
    the same command once more says the volume is complete (exit 0); other settings begin again.
    A .npy output (an array only) gets its record beside it as OUT.npy.json."""
    import os
    from pathlib import Path

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:96, :96]
    disk = ((yy - 48) ** 2 + (xx - 48) ** 2 < 40 ** 2).astype(np.float32)
    stack = np.stack([disk * 0.02 + rng.normal(0, 0.003, disk.shape).astype(np.float32) for _ in range(20)])
    np.save(tmp_path / "fbp.npy", stack)
    cmd = [sys.executable, "-m", "hpc.cli", "enhance", "fbp.npy", "--input-kind", "fbp", "--batch", "2",
           "--zoom", "1", "--threads", "1", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    marks = tmp_path / ".e.zarr.partial" / ".rows_done"
    code, err, kept = sigterm_after_a_chunk([*cmd, "--out", "e.zarr"], tmp_path, marks, env, polls=2400)
    said = re.search(r"stopped by SIGTERM: (\d+) of 20 slices are written and kept; run the same command again", err)
    assert code == 143 and said and int(said[1]) == 2 * len(kept), err
    assert 1 <= len(kept) < 10 and kept[0] == "0-2", kept
    r = subprocess.run([*cmd, "--out", "e.zarr"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0 and f"resuming: {2 * len(kept)} of 20 slices were written by an earlier run" in r.stderr, \
        r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.zarr", "fbp.npy"]
    r = subprocess.run([*cmd, "--out", "e.zarr"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0 and "e.zarr: already complete, made by this same command" in r.stdout, r.stdout + r.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelDomainWarning)
        monkeypatch.chdir(tmp_path)
        assert main([*cmd[3:], "--out", "ref.npy", "--quiet"]) == 0
    got, attrs = open_volume(tmp_path / "e.zarr")
    np.testing.assert_array_equal(got[:], np.load(tmp_path / "ref.npy"))
    record = json.loads((tmp_path / "ref.npy.json").read_text())
    assert record["model"]["input_kind"] == "fbp" and record["zoom"] == 1 and record["batch"] == 2
    assert attrs["input_fingerprint"] == record["input_fingerprint"] is not None
    # a store in progress begun with other settings is begun again
    os.rename(tmp_path / "e.zarr", tmp_path / ".e.zarr.partial")
    (marks).mkdir()
    (marks / "0-2").touch()
    r = subprocess.run([*cmd[:8], "4", *cmd[9:], "--out", "e.zarr"], capture_output=True, text=True, cwd=tmp_path,
                       env=env)
    assert r.returncode == 0 and "resuming" not in r.stderr, r.stderr
    assert not (tmp_path / ".e.zarr.partial").exists() and not (tmp_path / "e.zarr" / ".rows_done").exists()


@pytest.mark.skipif(not __import__("os").path.isdir("/proc"), reason="no /proc")
def test_an_output_folder_that_takes_no_file_is_named_before_any_work(tmp_path, capsys):
    """Blind probe AF: `--out /proc/v.zarr` passed os.access (root) and was refused later naming an
    internal lock file ('/proc/.v.zarr.lock: No such file or directory'). A file is now tried in
    the folder first: one line naming the output and its folder, exit 2."""
    np.save(tmp_path / "s.npy", np.zeros((32, 32), np.float32))
    for out in ("/proc/x.npy", "/proc/x.zarr"):
        assert main(["enhance", str(tmp_path / "s.npy"), "--out", out, "--input-kind", "fbp"]) == 2
        err = capsys.readouterr().err.strip()  # the kernel's reason: ENOENT for root, EACCES for others
        assert err.startswith(f"flytomo: error: {out}: cannot write in /proc") and "\n" not in err, err
