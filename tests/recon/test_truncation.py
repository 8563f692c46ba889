"""A sample wider than the field of view: the sinogram continued past the detector's edges."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recon.geometry import ScanGeometry
from recon.methods import make_reconstructor
from recon.metrics import psnr
from recon.phantoms import make_phantom
from recon.simulate import line_integrals_from_counts, simulate_flyscan
from recon.truncation import EDGE_COLUMNS, auto_pad, edge_ratio, extend_sinogram

FIELD = 64
ANGLES = np.arange(120) * 1.5


def _scan(size: int, seed: int, family: str = "heterogeneous") -> tuple[np.ndarray, np.ndarray]:
    """Line integrals (1, 120, FIELD) of a phantom ``size`` px across seen by a FIELD-px detector
    (its middle columns), and the truth's middle FIELD × FIELD."""
    obj = make_phantom(family, size, seed=seed)
    li = np.asarray(line_integrals_from_counts(simulate_flyscan(obj, ANGLES, 1.5, 2000, seed=2)))
    lo = (size - FIELD) // 2
    return li[..., lo:lo + FIELD], obj[lo:lo + FIELD, lo:lo + FIELD]


def test_extend_sinogram_continues_each_row_from_its_edges_down_to_zero():
    sino = torch.rand(2, 5, 16, dtype=torch.float64) + 1.0
    out = extend_sinogram(sino, 6)
    assert out.shape == (2, 5, 28)
    torch.testing.assert_close(out[..., 6:22], sino)  # the data untouched
    left, right = sino[..., :EDGE_COLUMNS].mean(-1), sino[..., -EDGE_COLUMNS:].mean(-1)
    fall = 0.5 * (1 + np.cos(np.pi * np.arange(1, 7) / 7))
    torch.testing.assert_close(out[..., 5], left * fall[0])
    torch.testing.assert_close(out[..., 0], left * fall[5])
    torch.testing.assert_close(out[..., 27], right * fall[5])
    assert bool((out[..., 0] < 0.06 * left).all()) and bool((out[..., 22:].diff(dim=-1) <= 0).all())
    assert extend_sinogram(sino, 0) is sino


def test_auto_pad_is_zero_for_a_sample_inside_the_field_and_grows_with_how_far_it_reaches():
    inside, _ = _scan(FIELD, 2)
    assert edge_ratio(inside) < 0.05 and auto_pad(inside) == 0
    wider, _ = _scan(96, 2)
    widest, _ = _scan(128, 2)
    assert 0.4 < edge_ratio(wider) < edge_ratio(widest) <= 1.0
    assert 4 <= auto_pad(wider) < auto_pad(widest) <= FIELD // 4
    assert auto_pad(np.zeros((1, 4, 8))) == 0  # nothing attenuates
    local = np.ones((1, 10, 64))  # edges at 0.95 of the peak: a sample several times the field
    local[..., 28:36] = 1.05
    assert auto_pad(local) == FIELD // 2
    local[..., 28:36] = 1.0 / 0.85  # 0.85: the ordinary cap, a quarter
    assert auto_pad(local) == FIELD // 4


def test_geometry_carries_its_pad_and_extends_around_the_axis():
    g = ScanGeometry.create(ANGLES, 64, center=33.5, blur_angle_deg=1.5, pad_columns=10)
    assert ScanGeometry.from_dict(g.to_dict()).to_dict() == g.to_dict() and g.to_dict()["pad_columns"] == 10
    assert "pad_columns" not in g.with_pad(0).to_dict() and g.with_pad(0).key() != g.key()
    e = g.extended()  # the image reaches the padded edge 43.5 px left of the axis: 12 more px a side
    assert (e.n_columns, e.image_size, e.center, e.pad_columns, g.margin) == (84, 88, 43.5, 0, 12)
    assert g.with_pad(0).margin == 0 and g.with_pad(0).extended().to_dict() == g.with_pad(0).to_dict()
    with pytest.raises(Exception, match="pad_columns"):
        ScanGeometry.create(ANGLES, 64, pad_columns=-1)


@pytest.mark.parametrize("seed", [1, 2])
def test_padding_recovers_a_sample_half_again_as_wide_as_the_field(seed):
    # a phantom 96 px across on a 64-px detector, I0 2000, 120 projections: unpadded, FBP and
    # modified MLEM score 21.0-21.5 / 22.0-22.5 dB in the field
    sino, truth = _scan(96, seed)
    pad = auto_pad(sino)
    for method in ("fbp", "mlem-flyscan"):
        plain = make_reconstructor(ScanGeometry.create(ANGLES, FIELD, blur_angle_deg=1.5), method)(sino)[0]
        padded = make_reconstructor(ScanGeometry.create(ANGLES, FIELD, blur_angle_deg=1.5, pad_columns=pad),
                                    method)(sino)[0]
        assert padded.shape == (FIELD, FIELD)
        assert psnr(padded, truth) > psnr(plain, truth) + 2.0, method


def test_a_sample_inside_the_field_is_reconstructed_exactly_as_without_padding():
    sino, _ = _scan(FIELD, 1)
    g = ScanGeometry.create(ANGLES, FIELD, blur_angle_deg=1.5, pad_columns=auto_pad(sino))
    assert g.pad_columns == 0
    np.testing.assert_array_equal(make_reconstructor(g, "mlem-flyscan", iterations=5)(sino),
                                  make_reconstructor(g.with_pad(0), "mlem-flyscan", iterations=5)(sino))


def test_a_sample_past_the_edges_gets_no_hint_that_would_make_it_worse(tmp_path):
    """A blind probe: a round sample 1.9x the field got the jitter hint (its truncated
    projections' centre of mass strays from a sinusoid, a stage need not) and, 1.25x the field,
    the air-offset hint (whose --air-columns would take the edges' attenuation off every ray).
    Either would make the volume worse: where the sample reaches past the edges, neither."""
    import warnings

    from recon.io import open_scan, write_fxi
    from recon.io.scan_geometry import scan_geometry
    from tests.recon.conftest import disc_sinogram

    rng = np.random.default_rng(4)
    for radius, offset in ((61.0, 2.5), (40.0, 0.0)):
        p = disc_sinogram(ANGLES, FIELD, (FIELD - 1) / 2, [(offset, 0.0, radius, 0.02), (8.0, 5.0, 6.0, 0.02)])
        tomo = rng.poisson(2000.0 * np.exp(-np.repeat(p[:, None, :], 16, axis=1))).astype(np.uint16)
        flats = rng.poisson(2000.0, (5, 16, FIELD)).astype(np.uint16)
        path = write_fxi(tmp_path / f"wide_{radius:g}.h5", tomo, flats, np.zeros((2, 16, FIELD), np.uint16), ANGLES,
                         blur_angle_deg=1.5)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            g = scan_geometry(open_scan(path), check_tilt=False)
        said = " | ".join(str(w.message) for w in caught)
        assert g.pad_columns > 0 and "past the detector's edges" in said, said
        assert "centre of mass strays" not in said and "than air at every angle" not in said, said
