"""Fixtures for the analysis tests: small synthetic experiment stores with known cracks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from .synth import heating_series

#: crack sizes through the synthetic experiment: cracks open under fast heating, heal in the hold
SCALES = (0.0, 0.5, 0.8, 1.0, 1.2, 0.9, 0.6)


@pytest.fixture(scope="session")
def series_store(tmp_path_factory):
    """(store path, truth crack fractions, scans) of a 7-scan 48³ heating experiment."""
    path = tmp_path_factory.mktemp("store") / "exp.zarr"
    return heating_series(path, SCALES, size=48)


def write_log(path, t_end=600.0, step=5.0, ramp_end=200.0, t0=0.0):
    """Temperature log: 25 → 525 °C linearly until ``ramp_end`` s (150 °C/min), then a hold."""
    t = np.arange(t0, t_end + step / 2, step)
    temp = np.interp(t, [0.0, ramp_end, 1e9], [25.0, 525.0, 525.0])
    pd.DataFrame({"time_s": t, "temperature_C": temp}).to_csv(path, index=False)
    return path


@pytest.fixture
def temperature_log(tmp_path):
    return write_log(tmp_path / "temperature.csv")
