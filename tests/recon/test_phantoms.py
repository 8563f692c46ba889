"""recon.phantoms: the four training families, grid lines, test images, the heating particle."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from scipy import ndimage as ndi

from recon import phantoms as P
from recon.errors import FlytomoError

N = 64
SEED = 7


@lru_cache(maxsize=None)
def _phantom(family: str, ndim: int, seed: int = SEED) -> np.ndarray:
    img = P.make_phantom(family, N, seed, ndim)
    img.setflags(write=False)
    return img


@lru_cache(maxsize=None)
def _heating(level: float, size: int = N, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    return P.heating_particle(size, level, seed)


def _outside(n: int) -> np.ndarray:
    """Pixels whose centre is farther than 0.95·n/2 from the centre (2D, [y, x])."""
    c = (n - 1) / 2.0
    r = np.hypot(*np.meshgrid(np.arange(n) - c, np.arange(n) - c, indexing="ij"))
    return r > 0.95 * n / 2.0 + 1e-6


def _densest_ray_reference(obj: np.ndarray, n_angles: int) -> float:
    """Independent estimate: rotate every slice by k·180°/n_angles and take the largest
    column sum (ray sums along y)."""
    a = obj[None] if obj.ndim == 2 else obj
    best = 0.0
    for k in range(n_angles):
        r = ndi.rotate(a, 180.0 * k / n_angles, axes=(1, 2), reshape=False, order=1)
        best = max(best, float(r.sum(axis=1).max()))
    return best


def _thin_features(a: np.ndarray) -> tuple[int, int]:
    """(dark, bright): pixels 1 px wide along x or y — darker than 0.6× both neighbours
    (cracks, pores) or brighter than 1.5× both (walls, inclusions) — in material."""
    top = float(a.max())
    dark = bright = 0
    for ax in (-1, -2):
        c = np.moveaxis(a, ax, -1)
        mid, left, right = c[..., 1:-1], c[..., :-2], c[..., 2:]
        lo, hi = np.minimum(left, right), np.maximum(left, right)
        dark += int(((lo > 0.2 * top) & (mid < 0.6 * lo)).sum())
        bright += int(((mid > 0.2 * top) & (mid > 1.5 * hi)).sum())
    return dark, bright


CASES = [(f, nd) for nd in (2, 3) for f in P.FAMILIES]
ALL_CASES = [(f, nd) for nd in (2, 3) for f in P.ALL_FAMILIES]  # with the training-only ones


def test_constants():
    assert P.FAMILIES == ("heterogeneous", "cracked", "network", "radial")
    assert P.ALL_FAMILIES == P.FAMILIES + P.EXTRA_FAMILIES == P.FAMILIES + ("leaves", "grains")
    assert (P.TRAIN_SEED0, P.VALIDATION_SEED0, P.TEST_SEED0) == (0, 1_000_000, 2_000_000)
    assert P.split_seed("train", 5) == 5
    assert P.split_seed("validation", 0) == 1_000_000
    assert P.split_seed("test", 3) == 2_000_003
    with pytest.raises(FlytomoError):
        P.split_seed("test", P.SEED_BLOCK)
    with pytest.raises(FlytomoError):
        P.split_seed("holdout", 0)


@pytest.mark.parametrize("family, ndim", ALL_CASES)
def test_shape_dtype_finite_nonnegative(family, ndim):
    a = _phantom(family, ndim)
    assert a.shape == (N,) * ndim and a.dtype == np.float32
    assert np.all(np.isfinite(a)) and a.min() >= 0
    assert (a > 0).mean() > 0.05  # not empty


@pytest.mark.parametrize("family, ndim", ALL_CASES)
def test_zero_outside_disk(family, ndim):
    a = _phantom(family, ndim)
    out = _outside(N)
    assert np.all(a[..., out] == 0)
    # and the material reaches well out into the disk
    c = (N - 1) / 2.0
    r = np.hypot(*np.meshgrid(np.arange(N) - c, np.arange(N) - c, indexing="ij"))
    assert np.any(a[..., r > 0.3 * N] > 0)


@pytest.mark.parametrize("family, ndim", ALL_CASES)
def test_densest_ray_is_two(family, ndim):
    a = _phantom(family, ndim)
    ref = _densest_ray_reference(a, 36 if ndim == 2 else 12)
    assert 1.7 <= ref <= 2.3, ref
    assert P.densest_ray(a) == pytest.approx(2.0, rel=1e-4)


def test_max_line_integral_scales():
    a = P.make_phantom("cracked", 32, 1, max_line_integral=1.0)
    b = P.make_phantom("cracked", 32, 1, max_line_integral=2.0)
    np.testing.assert_allclose(2 * a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("family, ndim", ALL_CASES)
def test_deterministic_per_seed(family, ndim):
    a = P.make_phantom(family, 32, SEED, ndim)
    assert np.array_equal(a, P.make_phantom(family, 32, SEED, ndim))
    other = P.make_phantom(family, 32, SEED + 1, ndim)
    assert np.abs(a - other).mean() > 0.1 * a.mean()


def test_families_differ_for_one_seed():
    imgs = [_phantom(f, 2) for f in P.FAMILIES]
    for i in range(len(imgs)):
        for j in range(i):
            assert not np.array_equal(imgs[i], imgs[j])


@pytest.mark.parametrize("family, ndim", CASES)
def test_one_pixel_features_present(family, ndim):
    dark, bright = _thin_features(_phantom(family, ndim))
    if family == "heterogeneous":  # single-pixel inclusions and voids
        assert dark + bright >= 5, (dark, bright)
    else:  # 1-px cracks (and pores) through material
        assert dark >= 10, (dark, bright)


def test_cracks_are_low_density_lines():
    """A 1-px crack: a dark pixel between material on both sides, in a line of such pixels."""
    a = _phantom("cracked", 2)
    top = a.max()
    lo = np.minimum(a[:, :-2], a[:, 2:])
    thin = np.zeros_like(a, bool)
    thin[:, 1:-1] = (lo > 0.2 * top) & (a[:, 1:-1] < 0.2 * lo)
    lo = np.minimum(a[:-2], a[2:])
    thin[1:-1] |= (lo > 0.2 * top) & (a[1:-1] < 0.2 * lo)
    labels, k = ndi.label(thin, structure=np.ones((3, 3)))
    assert k > 0
    assert np.bincount(labels.ravel())[1:].max() >= 5  # a line, not isolated pixels


def test_bad_arguments():
    with pytest.raises(FlytomoError, match="unknown phantom family 'x'; choose one of heterogeneous, cracked"):
        P.make_phantom("x", N, 0)
    with pytest.raises(FlytomoError):
        P.make_phantom("cracked", N, 0, ndim=4)
    with pytest.raises(FlytomoError):
        P.make_phantom("cracked", 8, 0)
    with pytest.raises(FlytomoError):
        P.make_phantom("cracked", N, -1)
    with pytest.raises(FlytomoError):
        P.make_phantom("cracked", N, 0, max_line_integral=0)
    assert P.make_phantom("radial", 32.0, 1).shape == (32, 32)  # integral floats are fine


def test_grid_lines_geometry():
    n, spacing = 64, 8
    g = P.grid_lines(n, spacing)
    assert g.shape == (n, n) and g.dtype == np.float32
    on = (np.arange(n) - n // 2) % spacing == 0
    expected = (on[:, None] | on[None, :]) & ~_outside(n)
    assert np.array_equal(g > 0, expected)
    assert np.unique(g[g > 0]).size == 1  # one value on every line
    # 1 px wide: a row next to a line row holds only the vertical lines' pixels
    row = g[n // 2 + 1]
    assert np.array_equal(row > 0, on & ~_outside(n)[n // 2 + 1])
    assert g[:, n // 2].sum() == pytest.approx(2.0, rel=1e-5)
    assert _densest_ray_reference(g, 36) == pytest.approx(2.0, rel=1e-3)
    assert P.grid_lines(n, 4, value=0.5).max() == pytest.approx(0.5)
    with pytest.raises(FlytomoError):
        P.grid_lines(n, 1)


def test_test_images_use_test_seeds():
    imgs = P.test_images(32, n_per_family=2, seed=10)
    assert [f for f, _ in imgs] == [f for f in P.FAMILIES for _ in range(2)]
    fam, img = imgs[3]
    assert fam == "cracked"
    assert np.array_equal(img, P.make_phantom("cracked", 32, P.TEST_SEED0 + 11))
    assert not np.array_equal(img, P.make_phantom("cracked", 32, 11))
    assert not np.array_equal(imgs[0][1], imgs[1][1])
    with pytest.raises(FlytomoError):
        P.test_images(32, n_per_family=2, seed=P.SEED_BLOCK - 1)


# ───────────────────────────── heating particle ─────────────────────────────

LEVELS = (0.0, 0.1, 0.3, 0.6, 1.0)


def test_heating_particle_basics():
    vol, cracks = _heating(1.0)
    assert vol.shape == cracks.shape == (N, N, N)
    assert vol.dtype == np.float32 and cracks.dtype == bool
    assert np.all(np.isfinite(vol)) and vol.min() >= 0
    assert np.all(vol[:, _outside(N)] == 0)
    pm = P.particle_mask(N, 3)
    assert np.all(vol[~pm] == 0) and np.all(cracks <= pm)
    assert np.all(vol[cracks] == 0)
    # about 0.7 n across
    zs = np.nonzero(pm.any(axis=(1, 2)))[0]
    assert 0.6 * N <= zs.size <= 0.8 * N
    # uncracked densest ray ≈ 2; the solid is nearly constant (mild texture)
    vol0, _ = _heating(0.0)
    assert P.densest_ray(vol0) == pytest.approx(2.0, rel=1e-4)
    solid = vol0[vol0 > 0]
    assert solid.std() < 0.1 * solid.mean()
    assert solid.min() > 0.5 * solid.mean()


def test_heating_crack_fraction_monotonic_and_nested():
    pm = P.particle_mask(N, 3)
    fracs, prev = [], None
    for level in LEVELS:
        _, cracks = _heating(level)
        fracs.append(cracks.sum() / pm.sum())
        if prev is not None:
            assert np.all(prev <= cracks)  # cracks only grow with the level
        prev = cracks
    assert fracs[0] == 0
    assert all(b > a for a, b in zip(fracs, fracs[1:])), fracs
    assert 0.01 <= fracs[-1] <= 0.1, fracs


def test_heating_cracks_reach_surface_and_open():
    pm = P.particle_mask(N, 3)
    _, cracks = _heating(1.0)
    shell = pm & ~ndi.binary_erosion(pm, iterations=2)
    assert (cracks & shell).sum() > 20  # fully grown cracks cut the surface
    # opening 2–3 px near the surface: cracks thicker than 1 px exist there
    thick = ndi.binary_erosion(cracks, structure=np.ones((2, 2, 2)))
    assert thick.any()
    _, early = _heating(0.3)
    assert early.any() and not (early & shell).any()  # young cracks still inside


def test_heating_pores_and_solid_unchanged_across_levels():
    vol0, _ = _heating(0.0)
    pm = P.particle_mask(N, 3)
    pores0 = pm & (vol0 == 0)
    assert 10 <= pores0.sum() <= 0.05 * pm.sum()
    for level in LEVELS[1:]:
        vol, cracks = _heating(level)
        pores = pm & (vol == 0) & ~cracks
        assert np.array_equal(pores, pores0)  # pores identical at every level
        assert np.array_equal(vol[~cracks], vol0[~cracks])  # solid untouched
    assert not np.array_equal(_heating(1.0, seed=4)[0], _heating(1.0)[0])
    v1, c1 = P.heating_particle(N, 0.5, 3)
    assert np.array_equal(v1, _heating(0.5)[0]) and np.array_equal(c1, _heating(0.5)[1])


def test_heating_bad_level():
    with pytest.raises(FlytomoError):
        P.heating_particle(32, 1.5, 0)
    with pytest.raises(FlytomoError):
        P.heating_particle(32, float("nan"), 0)


def test_leaves_have_grey_levels_holes_and_outline():
    """Dead leaves: many grey levels (not a few phases), empty leaves inside the outline,
    and sizes from 1.5 px up (a scale-invariant mixture); never a test image."""
    from scipy import ndimage as ndi

    n_holes = 0
    for seed in range(3):
        a = P.make_phantom("leaves", 128, seed)
        levels = np.unique(np.round(a[a > 0] / a.max(), 2))
        assert levels.size >= 40, levels.size
        n_holes += ndi.label(ndi.binary_fill_holes(a > 0) & (a == 0))[1]
    assert n_holes >= 5, n_holes
    assert all(f in P.FAMILIES for f, _ in P.test_images(32, 1))


def test_grains_have_grain_levels_and_intergranular_cracks():
    """Grains: particles of many grains of distinct density (not one phase), cut by thin dark
    intergranular cracks (long components of near-empty pixels inside the outline, ≤ 3.5 px
    wide on average: area / skeleton length); deterministic, zero outside the disk, never a
    test image."""
    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize

    n_thin = 0
    for seed in range(4):
        a = P.make_phantom("grains", 256, seed)
        assert not np.any(a[~P.support_mask(256)])
        solid = ndi.binary_fill_holes(a > 0)
        inside = a[solid & (a > 0)]
        assert np.unique(np.round(inside / inside.max(), 2)).size >= 40
        dark = solid & (a < 0.2 * np.median(inside))
        assert 0.01 < dark.sum() / solid.sum() < 0.15
        lab, k = ndi.label(dark)
        area = np.bincount(lab.ravel(), minlength=k + 1)[1:]
        length = np.bincount(lab[skeletonize(dark)], minlength=k + 1)[1:]
        n_thin += int(np.sum((length >= 8) & (area <= 3.5 * length)))
    assert n_thin >= 20, n_thin
    assert np.array_equal(a, P.make_phantom("grains", 256, 3))
    assert all(f != "grains" for f, _ in P.test_images(32, 1))
