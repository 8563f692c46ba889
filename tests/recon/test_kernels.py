"""The compiled ray tracer (recon.kernels): angle blocks and its on-disk cache."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

kernels = pytest.importorskip("recon.kernels", reason="numba not installed")
ROOT = Path(__file__).resolve().parents[2]


def test_angle_blocks_give_the_bits_of_one_call(monkeypatch):
    """The rays run in blocks of angles, so that Ctrl-C stops a large slice within a block; every
    pixel adds its terms in the same order as one call would: bit-identical, both directions."""
    rng = np.random.default_rng(3)
    n, nd, batch = 40, 46, 2
    angles = np.sort(rng.uniform(0, np.pi, 53))
    offsets = rng.normal(0, 0.4, angles.size)
    x = rng.random((n * n, batch)).astype(np.float32)
    y = rng.random((angles.size * nd, batch)).astype(np.float32)
    whole = (kernels.joseph_forward(x, angles, offsets, 22.3, n, nd, 2),
             kernels.joseph_adjoint(y, angles, offsets, 22.3, n, 2))
    monkeypatch.setattr(kernels, "BLOCK_WORK", n * n * batch * 5)  # 5 angles a block
    assert len(kernels._angle_blocks(angles.size, n, batch)) == 11
    blocked = (kernels.joseph_forward(x, angles, offsets, 22.3, n, nd, 2),
               kernels.joseph_adjoint(y, angles, offsets, 22.3, n, 2))
    for a, b in zip(whole, blocked):
        assert a.dtype == np.float32 and np.array_equal(a, b)


def test_compiled_where_no_cache_can_be_written():
    """Where numba finds no writable cache (a read-only container without a home: no locator),
    the loops are compiled in the process instead, and give the same numbers."""
    code = ("import numpy as np; from recon import kernels as k; "
            "print(type(k._forward._cache).__name__, "
            "k.joseph_forward(np.ones((16, 1), np.float32), np.array([0.0]), np.zeros(1), 1.5, 4, 4, 1).sum())")
    env = {**os.environ, "NUMBA_CACHE_LOCATOR_CLASSES": "_UserProvidedCacheLocator", "PYTHONPATH": str(ROOT)}
    env.pop("NUMBA_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["NullCache", "16.0"]
