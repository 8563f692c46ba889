"""The training-step benchmark times a real step in each precision and layout."""
import pytest

from tests.bench import load_bench


@pytest.mark.parametrize("bf16, channels_last", [(False, False), (False, True), (True, True)])
def test_step_seconds_times_a_step(bf16, channels_last):
    bench = load_bench("train_step")
    seconds = bench.step_seconds({"nf": 8, "nb": 1, "gc": 4}, bf16, channels_last, steps=2, patch=32)
    assert 0.0 < seconds < 5.0
    assert set(bench.MODES.values()) == {(False, False), (False, True), (True, True)}
