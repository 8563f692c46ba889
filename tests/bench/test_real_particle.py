"""The real slice becomes a phantom: in the disk, non-negative, scaled like the test phantoms."""
import numpy as np
import pytest

from recon.metrics import psnr
from recon.phantoms import densest_ray, support_mask
from recon.weights import seed_checkpoint_path

from tests.bench import load_bench

TIFF = seed_checkpoint_path().with_name("img_test.tiff")


def _bench():
    return load_bench("real_particle")


@pytest.mark.skipif(not TIFF.is_file(), reason="../shared/data/seed-model/img_test.tiff not present")
def test_particle_truth_is_a_phantom_of_the_real_slice():
    truth = _bench().particle_truth(TIFF, 96)
    assert truth.shape == (96, 96) and truth.dtype == np.float32 and truth.min() >= 0
    assert not truth[~support_mask(96)].any()
    assert densest_ray(truth) == pytest.approx(2.0, rel=0.02)
    # the particle is there: a tenth of the disk or more well above the faint background
    assert (truth > 0.5 * truth.max()).mean() > 0.02


def test_smoothed_psnr_forgives_fine_noise_not_a_wrong_object():
    rng = np.random.default_rng(0)
    truth = np.zeros((64, 64), np.float32)
    truth[16:48, 16:48] = 1.0
    noisy = truth + rng.normal(0, 0.2, truth.shape).astype(np.float32)
    bench = _bench()
    assert bench.smoothed_psnr(noisy, truth) > psnr(noisy, truth) + 5  # white noise averages out
    shifted = np.roll(truth, 4, axis=1)
    assert bench.smoothed_psnr(shifted, truth) < 15  # a misplaced edge stays an error
