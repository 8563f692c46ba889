"""The CUDA paths against the CPU: operators, modified MLEM, the network, training with autocast.

Skipped where torch sees no GPU (CI); run on a lent GPU machine by bench/gpu.sh.
"""
import json

import numpy as np
import pytest
import torch

from recon.geometry import ScanGeometry
from recon.infer import apply_model
from recon.methods import reconstruct
from recon.operators import FlyScanProjector, OperatorCostWarning, Projector
from recon.rrdb import build_model
from recon.simulate import line_integrals_from_counts, simulate_flyscan
from recon.train import TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(autouse=True)
def _no_tf32():
    """Exact float32 on the GPU (TF32 convolutions round to ~1e-3), as on the CPU."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def _disk(n: int) -> np.ndarray:
    c = np.arange(n) - (n - 1) / 2
    img = np.where(c[:, None] ** 2 + c[None, :] ** 2 < (0.35 * n) ** 2, 0.04, 0.0)
    img[n // 2 - 1:n // 2 + 1, n // 4:3 * n // 4] = 0.0  # a 2-px crack
    return img.astype(np.float32)


def test_operators_on_cuda_equal_the_cpu_and_stay_adjoint():
    g = ScanGeometry.create(np.linspace(0, 180, 45, endpoint=False), 70, center=35.7,
                            blur_angle_deg=1.5, image_size=64)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((3, 64, 64)))
    y = torch.from_numpy(rng.standard_normal((3, 45, 70)))
    for cls in (Projector, FlyScanProjector):
        cpu, gpu = cls(g, dtype=torch.float64), cls(g, "cuda", torch.float64)
        ax, aty = gpu.forward(x), gpu.adjoint(y)
        assert ax.device.type == "cuda" and aty.device.type == "cuda"
        np.testing.assert_allclose(ax.cpu().numpy(), cpu.forward(x).numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(aty.cpu().numpy(), cpu.adjoint(y).numpy(), rtol=1e-10, atol=1e-10)
        dot = abs(float((ax.cpu() * y).sum() - (x * aty.cpu()).sum())) / float(ax.norm() * y.norm())
        assert dot < 1e-10
    with pytest.warns(OperatorCostWarning, match="sampled"):
        sampled = FlyScanProjector(g, "cuda", torch.float64, max_cached_bytes=1)  # the GPU's default when too large
    assert sampled.uncached == "sampled"
    np.testing.assert_allclose(sampled.forward(x).cpu().numpy(), cpu.forward(x).numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sampled.adjoint(y).cpu().numpy(), cpu.adjoint(y).numpy(), rtol=1e-9, atol=1e-9)


def test_modified_mlem_on_cuda_equals_the_cpu():
    n = 64
    angles = (np.arange(90) + 0.5) * 2.0
    scan = simulate_flyscan(_disk(n)[None], angles, 1.5, 3000.0, n_sub=4, seed=1)
    sino = line_integrals_from_counts(scan)
    g = ScanGeometry.create(angles, n, blur_angle_deg=1.5, image_size=n)
    cpu = reconstruct(sino, g, "mlem-flyscan", iterations=20)
    gpu = reconstruct(sino, g, "mlem-flyscan", device="cuda", iterations=20)
    assert gpu.shape == cpu.shape == (1, n, n) and gpu.dtype == np.float32
    assert np.abs(gpu - cpu).max() < 1e-4 * np.abs(cpu).max()


def test_network_on_cuda_equals_the_cpu_and_autocast_stays_close():
    torch.manual_seed(0)
    net = build_model({"architecture": "rrdb", "nf": 8, "nb": 1, "gc": 8, "dense_convs": 3})
    vol = np.random.default_rng(3).random((5, 80, 72), dtype=np.float32)
    cpu = apply_model(net, vol, normalization="seed", batch=2)
    gpu = apply_model(net, vol, normalization="seed", batch=2, device="cuda")
    tiled = apply_model(net, vol, normalization="seed", batch=3, device="cuda", tile=40, overlap=16)
    amp = apply_model(net, vol, normalization="seed", batch=2, device="cuda", amp=True)
    span = float(np.ptp(cpu))
    assert np.abs(gpu - cpu).max() < 1e-5 * span
    assert np.abs(tiled - gpu).max() < 1e-5 * span
    assert np.abs(amp - cpu).max() < 2e-2 * span


def test_training_on_cuda_with_autocast_learns(tmp_path):
    cfg = TrainConfig.model_validate({
        "name": "tiny-cuda", "device": "cuda",
        "model": {"architecture": "rrdb", "nf": 8, "nb": 1, "gc": 8},
        "data": {"source": "synthetic", "image_size": 32, "n_train": 8, "n_validation": 2, "patch": 32},
        "training": {"steps": 30, "batch": 4, "lr": 3e-3, "loss": "mse", "lr_schedule": "constant",
                     "validate_every": 10, "checkpoint_every": 10, "amp": True}})
    result = train(cfg, tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert result.status == "finished" and result.step == 30
    assert rows[-1]["val_loss"] < rows[0]["val_loss"] and rows[-1]["val_psnr"] > rows[0]["val_psnr"]
    card = json.loads(result.weights.with_suffix(".json").read_text())
    assert card["training"]["amp"] is True and "cuda" in json.dumps(card)


def test_training_pairs_simulated_on_cuda_equal_the_cpu_pairs():
    """Pairs made on the GPU (projections and modified MLEM there, noise drawn on the CPU) are
    the CPU's pairs up to rounding: same truths and parameters, inputs within 1e-3 of range."""
    from recon.train import make_pair_sources

    cfg = TrainConfig.model_validate({
        "name": "pairs", "input_kind": "mlem-flyscan",
        "data": {"source": "simulated", "image_size": 64, "n_train": 2, "n_validation": 1,
                 "patch": 32, "n_angles": [40, 60], "n_sub": 4, "slices_per_scan": 2}})
    cpu, gpu = make_pair_sources(cfg, "cpu")[0], make_pair_sources(cfg, "cuda")[0]
    for i in range(2):
        (xc, tc, pc), (xg, tg, pg) = cpu(i), gpu(i)
        assert pc == pg and np.array_equal(tc, tg)
        assert np.abs(xg - xc).max() < 1e-3 * np.ptp(xc)
