"""Training: config validation, a tiny run that learns, bit-identical resume, the CLI."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError

from recon.errors import FlytomoError
from recon.train import (
    SyntheticPairs,
    TrainConfig,
    load_config,
    lr_at,
    sample_batch,
    train,
)
from recon.weights import load_model

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "name": "tiny",
    "threads": 1,
    "model": {"architecture": "rrdb", "nf": 8, "nb": 1, "gc": 8},
    "data": {"source": "synthetic", "image_size": 32, "n_train": 8, "n_validation": 2,
             "patch": 32},
    "training": {"steps": 30, "batch": 4, "lr": 3e-3, "loss": "mse", "lr_schedule": "constant",
                 "validate_every": 10, "checkpoint_every": 10},
}


def _cfg(**training) -> TrainConfig:
    raw = json.loads(json.dumps(TINY))
    raw["training"].update(training)
    return TrainConfig.model_validate(raw)


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_learns_and_exports(tmp_path):
    result = train(_cfg(), tmp_path / "run", progress=False)
    assert result.status == "finished" and result.step == 30
    rows = _rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [0, 10, 20, 30]
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert rows[-1]["val_psnr"] > rows[0]["val_psnr"]
    assert {"val_ssim", "train_loss", "lr", "wall_time_s"} <= set(rows[-1])
    loaded = load_model(result.weights, input_kind="fbp")
    card = loaded.card
    assert card["steps"] == 30 and card["input_kind"] == "fbp" and card["normalization"] == "seed"
    assert card["training"]["loss"] == "mse" and card["data"]["source"] == "synthetic"
    assert card["validation"]["val_psnr"] == pytest.approx(rows[-1]["val_psnr"])
    assert "input_psnr" in card["validation"] and card["wall_time_s"] >= 0
    assert (tmp_path / "run" / "data" / "train" / "inputs.npy").is_file()


def test_cpu_bf16_run_learns_and_says_so(tmp_path, bf16_cpu):
    """training.cpu_bf16: bfloat16 autocast, channels-last, on CPU: it learns as the float32 run
    does, differs from it by rounding only, and the card records the precision."""
    fp32 = train(_cfg(), tmp_path / "fp32", progress=False)
    bf16 = train(_cfg(cpu_bf16=True), tmp_path / "bf16", progress=False)
    rows, rows32 = _rows(tmp_path / "bf16"), _rows(tmp_path / "fp32")
    assert rows[-1]["val_loss"] < 0.9 * rows[0]["val_loss"]  # as the float32 run: 0.0206 → 0.0172
    assert abs(rows[-1]["val_psnr"] - rows32[-1]["val_psnr"]) < 0.1
    assert rows[-1]["val_psnr"] != rows32[-1]["val_psnr"]  # it did run in bfloat16
    assert load_model(bf16.weights, input_kind="fbp").card["training"]["mixed_precision"] == "bfloat16"
    assert load_model(fp32.weights, input_kind="fbp").card["training"]["mixed_precision"] is None


def test_cpu_bf16_on_a_cpu_without_it_is_float32_and_says_so(tmp_path, no_bf16_cpu):
    """Blind probe AC: on a CPU without bfloat16 arithmetic, cpu_bf16 ran 4x slower per step
    than float32, unsaid. Now it warns, trains in float32 (the same weights bit for bit) and
    the card says float32."""
    fp32 = train(_cfg(steps=6, validate_every=100), tmp_path / "fp32", progress=False)
    with pytest.warns(UserWarning, match=r"training.cpu_bf16: this CPU has no bfloat16 arithmetic .* float32 is used"):
        asked = train(_cfg(steps=6, validate_every=100, cpu_bf16=True), tmp_path / "bf16", progress=False)
    card = load_model(asked.weights, input_kind="fbp").card
    assert card["training"]["mixed_precision"] is None and card["segments"][0]["precision"] == "float32"
    assert card["training"]["amp"] is False  # amp: true in the config is CUDA's: as it ran here
    from recon.train import config_digest

    assert card["config_digest"] == config_digest(_cfg(steps=6, validate_every=100, cpu_bf16=True))
    a, b = (load_model(r.weights, input_kind="fbp").model.state_dict() for r in (fp32, asked))
    assert all(torch.equal(a[k], b[k]) for k in a)


class _Killed(Exception):
    pass


def test_pair_cache_resumes_a_killed_generation(tmp_path):
    from recon.train import build_pair_set

    src = SyntheticPairs(16, seed=1)
    calls, kill = [], [True]

    def flaky(i):
        calls.append(i)
        if i == 20 and kill[0]:
            kill[0] = False
            raise _Killed  # killed while generating pair 20
        return src(i)

    with pytest.raises(_Killed):
        build_pair_set(flaky, 40, tmp_path / "train", {"k": 1})
    assert not (tmp_path / "train").exists()  # nothing claims to be complete
    calls.clear()
    pairs = build_pair_set(flaky, 40, tmp_path / "train", {"k": 1})
    assert calls[0] == 16 and len(calls) == 24  # continued from the last saved pair
    assert isinstance(pairs.inputs, np.memmap) and pairs.inputs.shape == (40, 16, 16)
    np.testing.assert_array_equal(pairs.inputs[25], src(25)[0])
    calls.clear()
    build_pair_set(flaky, 40, tmp_path / "train", {"k": 1})
    assert calls == []  # cached
    with pytest.warns(UserWarning, match=r"holds 40 pairs made with other settings \(k\): they are replaced"):
        build_pair_set(flaky, 40, tmp_path / "train", {"k": 2})
    assert len(calls) == 40  # another key: regenerated, and said (a shared data_dir was replaced silently)


def test_a_time_limit_while_pairs_are_simulated_keeps_them_and_stops(tmp_path):
    """Blind probe AH: `flytomo train --time-limit 30` still simulated pairs at 120 s (the limit
    was looked at between training steps only), so a batch job overran its slot. The pair
    simulation stops at the limit too, keeping every pair made; the next call goes on."""
    import time

    from recon.train import build_pair_set

    src = SyntheticPairs(16, seed=2)
    calls = []

    def slow(i):
        calls.append(i)
        time.sleep(0.05)
        return src(i)

    made = build_pair_set(slow, 40, tmp_path / "train", {"k": 1}, deadline=time.perf_counter() + 0.5)
    assert isinstance(made, int) and 3 <= made < 40 and len(calls) == made
    assert not (tmp_path / "train").exists()  # nothing claims to be complete
    calls.clear()
    pairs = build_pair_set(slow, 40, tmp_path / "train", {"k": 1})
    assert calls == list(range(made, 40))  # every pair made before the limit kept
    np.testing.assert_array_equal(pairs.inputs[made - 1], src(made - 1)[0])


def test_pair_cache_grows_and_shrinks_without_simulating_again(tmp_path):
    """The count is not part of the cache key: more pairs keep those made and simulate the
    rest (also when the growth is killed), fewer read the first ones; the training key's pair
    counts (data.n_train) do not split the cache either."""
    from recon.train import build_pair_set

    src = SyntheticPairs(16, seed=3)
    calls, kill_at = [], [None]

    def counted(i):
        calls.append(i)
        if i == kill_at[0]:
            kill_at[0] = None
            raise _Killed
        return src(i)

    folder = tmp_path / "train"
    key = lambda n: {"split": "train", "data": {"n_train": n, "image_size": 16}}  # noqa: E731
    build_pair_set(counted, 24, folder, key(24))
    first = np.array(np.load(folder / "inputs.npy"))
    assert calls == list(range(24))
    calls.clear()
    kill_at[0] = 35
    with pytest.raises(_Killed):  # growing to 48 is killed at pair 35
        build_pair_set(counted, 48, folder, key(48))
    assert json.loads((folder / "meta.json").read_text())["n"] == 24  # the complete set stands
    assert calls == list(range(24, 36))
    calls.clear()
    pairs = build_pair_set(counted, 48, folder, key(48))
    assert calls == list(range(32, 48))  # resumed from the last saved pair, not from 24
    assert pairs.inputs.shape == (48, 16, 16) and len(pairs.params) == 48
    np.testing.assert_array_equal(pairs.inputs[:24], first)
    for i in (24, 40, 47):
        np.testing.assert_array_equal(pairs.inputs[i], src(i)[0])
    s48 = pairs.scales("seed")
    calls.clear()
    small = build_pair_set(counted, 10, folder, key(10))
    assert calls == [] and small.inputs.shape == (10, 16, 16) and len(small.params) == 10
    np.testing.assert_array_equal(small.scales("seed"), s48[:10])
    build_pair_set(counted, 10, folder, {"split": "train", "data": {"n_train": 10, "image_size": 17}})
    assert len(calls) == 10  # other settings: other pairs


def test_runs_share_pairs_through_data_dir(tmp_path):
    """Two configs naming one data_dir: the second, asking for more pairs, simulates only the
    new ones; data_dir is relative to the config file and may change on resume."""
    base = {"threads": 1, "model": {"architecture": "rrdb", "nf": 8, "nb": 1, "gc": 8},
            "data": {"source": "synthetic", "image_size": 32, "patch": 16, "n_train": 6,
                     "n_validation": 2},
            "training": {"steps": 2, "batch": 2, "validate_every": 2, "checkpoint_every": 2},
            "data_dir": "pairs"}
    train(*load_config(_write(tmp_path, {**base, "name": "a", "run_dir": "a"})), progress=False)
    made = np.array(np.load(tmp_path / "pairs" / "train" / "inputs.npy"))
    assert made.shape[0] == 6 and not (tmp_path / "a" / "data").exists()
    more = {**base, "name": "b", "run_dir": "b", "data": {**base["data"], "n_train": 9}}
    train(*load_config(_write(tmp_path, more)), progress=False)
    grown = np.load(tmp_path / "pairs" / "train" / "inputs.npy")
    assert grown.shape[0] == 9
    np.testing.assert_array_equal(grown[:6], made)


@pytest.mark.parametrize("cpu_bf16", [False, True])
def test_resume_after_kill_is_bit_identical(tmp_path, cpu_bf16, bf16_cpu, capsys):
    cfg = _cfg(steps=12, checkpoint_every=4, validate_every=100, lr_schedule="cosine", loss="l1",
               cpu_bf16=cpu_bf16)
    train(cfg, tmp_path / "a", progress=False)
    stopped = train(cfg, tmp_path / "b", progress=False, stop_at_step=5)
    assert stopped.status == "stopped" and stopped.step == 5
    assert not (tmp_path / "b" / "tiny.safetensors").exists()
    capsys.readouterr()
    resumed = train(cfg, tmp_path / "b", progress=False)
    assert resumed.status == "finished" and resumed.step == 12
    assert f"resuming {tmp_path / 'b' / 'checkpoint.pt'} at step 5 of 12" in capsys.readouterr().err  # probe AC
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 12
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    steps = [r["step"] for r in _rows(tmp_path / "b")]
    assert steps == sorted(set(steps))  # no duplicated rows after the resume
    # the card says which calls made the steps, with what a resume may change (it changes the last bits)
    precision = "bfloat16" if cpu_bf16 else "float32"
    segments = [json.loads((tmp_path / r / "tiny.json").read_text())["segments"] for r in "ab"]
    assert [(s["from_step"], s["to_step"], s["precision"]) for s in segments[0]] == [(0, 12, precision)]
    assert [(s["from_step"], s["to_step"], s["precision"]) for s in segments[1]] == [(0, 5, precision),
                                                                                      (5, 12, precision)]
    assert all(s["device"] == "cpu" and s["threads"] >= 1 for s in segments[1])
    # a changed config does not silently continue an old run
    with pytest.raises(FlytomoError, match="training.lr"):
        train(_cfg(steps=12, checkpoint_every=4, validate_every=100, lr_schedule="cosine",
                   loss="l1", lr=1e-2, cpu_bf16=cpu_bf16),
              tmp_path / "b", progress=False)
    with pytest.raises(FlytomoError, match=r"changed: training.steps\); .*give a new run_dir with init: its tiny"):
        train(_cfg(steps=13, checkpoint_every=4, validate_every=100, lr_schedule="cosine", loss="l1",
                   cpu_bf16=cpu_bf16), tmp_path / "b", progress=False)


def test_batches_and_lr_are_functions_of_the_step():
    src = SyntheticPairs(24, seed=3)
    x, y, _ = src(5)
    assert x.shape == y.shape == (24, 24) and np.array_equal(src(5)[0], x)
    xs, ys = np.stack([src(i)[0] for i in range(3)]), np.stack([src(i)[1] for i in range(3)])
    b1 = sample_batch(xs, ys, 4, 16, seed=0, step=11)
    b2 = sample_batch(xs, ys, 4, 16, seed=0, step=11)
    assert b1[0].shape == (4, 1, 16, 16) and np.array_equal(b1[0], b2[0])
    assert not np.array_equal(b1[0], sample_batch(xs, ys, 4, 16, seed=0, step=12)[0])
    opt = _cfg(steps=100, lr_schedule="cosine", warmup_steps=10).training
    assert lr_at(0, opt) == pytest.approx(opt.lr / 10)
    assert lr_at(10, opt) == pytest.approx(opt.lr)
    assert lr_at(99, opt) < opt.lr * 0.05


def _write(tmp_path, raw) -> Path:
    p = tmp_path / "train.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.parametrize("patch, key", [
    ({"training": {"lr": -1}}, "training.lr"),
    ({"training": {"loss": "huber"}}, "training.loss"),
    ({"data": {"patch": 64}}, "data"),
    ({"data": {"photons": [100, 10]}}, "data.photons"),
    ({"epochs": 3}, "epochs"),
    ({"model": {"architecture": "rrdb", "blocks": 3}}, "model.blocks"),
    ({"input_kind": "sirt"}, "input_kind"),
    ({"training": {"steps": True}}, "training.steps"),  # `steps: yes` is not one step
    ({"data": {"photons": [True, 3000]}}, "data.photons"),
    ({"model": {"architecture": "rrdb", "nb": 0}}, "model.nb"),  # was accepted: a network of no blocks
])
def test_bad_config_names_the_key(tmp_path, patch, key):
    raw = json.loads(json.dumps(TINY))
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(raw.get(k), dict) and k != "model":
            raw[k].update(v)
        else:
            raw[k] = v
    path = _write(tmp_path, raw)
    with pytest.raises(FlytomoError) as err:
        load_config(path)
    assert f"'{key}" in str(err.value) and str(path) in str(err.value)


def test_a_key_given_twice_in_a_training_config_is_refused(tmp_path):
    path = _write(tmp_path, TINY)
    path.write_text(path.read_text() + "name: other\n")
    with pytest.raises(FlytomoError, match=r"not readable YAML \(key 'name' is given twice"):
        load_config(path)


def test_config_files_and_run_dir(tmp_path):
    _, run_dir = load_config(_write(tmp_path, {**TINY, "run_dir": "runs/{name}"}))
    assert run_dir == (tmp_path / "runs" / "tiny").resolve()
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    listed = tmp_path / "list.yaml"
    listed.write_text("- name: tiny\n")
    # the same words as an experiment config's (one reader, recon.yamlfile.read_yaml_mapping)
    for path, words in ((tmp_path / "absent.yaml", "absent.yaml: no such training config"),
                        (tmp_path, f"{tmp_path}: is a folder, not the training config (a YAML file)"),
                        (bad, "bad.yaml: not readable YAML (line 1, column 17: expected ',' or ']'"),
                        (empty, "empty.yaml: the training config is empty"),
                        (listed, "list.yaml: the training config must be a mapping of keys (name:, model:")):
        with pytest.raises(FlytomoError) as err:
            load_config(path)
        assert words in str(err.value) and "\n" not in str(err.value)
    shipped, _ = load_config(ROOT / "jobs" / "train.yaml")
    assert shipped.data.source == "simulated" and shipped.model["architecture"] == "rrdb"


def test_jobs_train_yaml_names_every_key():
    """jobs/train.yaml is the config with every key explained: each field of the config model
    (and of its sections) is in it (it lacked training.cpu_bf16 and data.matrix_region)."""
    import yaml

    from recon.train import TrainConfig

    raw = yaml.safe_load((ROOT / "jobs" / "train.yaml").read_text())
    missing = []

    def walk(model, section, path=""):
        for name, field in model.model_fields.items():
            if name not in section:
                missing.append(path + name)
            elif hasattr(field.annotation, "model_fields") and isinstance(section[name], dict):
                walk(field.annotation, section[name], f"{path}{name}.")

    walk(TrainConfig, raw)
    assert missing == []


def test_cli_train(tmp_path, capsys):
    from hpc.cli import main

    raw = json.loads(json.dumps(TINY))
    raw["training"]["steps"] = 4
    path = _write(tmp_path, {**raw, "run_dir": "run"})
    assert main(["train", "--config", str(path), "--quiet"]) == 0
    assert "validation PSNR" in capsys.readouterr().out
    assert (tmp_path / "run" / "tiny.safetensors").is_file()
    assert main(["train", "--config", str(path), "--quiet", "--device", "tpu"]) == 2
    assert "device" in capsys.readouterr().err
    raw["data"] = {"source": "simulated", "image_size": 32, "patch": 16, "families": ["leaf"]}
    bad = _write(tmp_path, {**raw, "run_dir": "run2"})  # a key checked when the pairs are made
    assert main(["train", "--config", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"flytomo: error: {bad}: key 'data.families': unknown phantom family leaf") and "\n" not in err


def test_ssim_loss_is_the_metrics_ssim_and_mixes_with_the_pixel_loss():
    from skimage.metrics import structural_similarity

    from recon.train import pixel_loss, ssim_index

    rng = np.random.default_rng(0)
    t = rng.random((2, 1, 40, 50))
    o = t + 0.1 * rng.standard_normal(t.shape)
    ref = np.mean([structural_similarity(t[i, 0], o[i, 0], data_range=1.0) for i in range(2)])
    out, truth = torch.tensor(o, requires_grad=True), torch.tensor(t)
    assert float(ssim_index(out, truth)) == pytest.approx(ref, abs=1e-9)
    mixed = pixel_loss("l1", 0.0, 0.25)(out, truth)
    expected = 0.75 * float((out - truth).abs().mean()) + 0.25 * (1 - ref)
    assert float(mixed) == pytest.approx(expected, abs=1e-9)
    mixed.backward()
    assert out.grad is not None and torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0
    assert float(1 - ssim_index(truth, truth)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None
                        for m in ("recon.phantoms", "recon.methods", "recon.simulate")),
                    reason="simulation modules not available")
def test_simulated_pairs_are_reproducible():
    from recon.train import DataConfig, SimulatedPairs

    data = DataConfig(image_size=32, n_angles=(16, 24), n_sub=2, patch=16, slices_per_scan=2)
    src = SimulatedPairs(data, "fbp", seed0=123)
    x, y, params = src(1)
    assert x.shape == y.shape == (32, 32) and x.dtype == np.float32
    assert np.isfinite(x).all() and params["family"] in data.families
    assert np.array_equal(src(1)[0], x)
    assert src(0)[2]["n_angles"] == params["n_angles"] and src(2)[2]["group"] == 1


@pytest.mark.skipif(importlib.util.find_spec("recon.phantoms") is None,
                    reason="phantom module not available")
def test_object_scale_puts_a_smaller_sample_in_the_field():
    from recon.train import DataConfig, SimulatedPairs

    data = DataConfig(image_size=64, object_scale=(0.4, 0.6), patch=16)
    src = SimulatedPairs(data, "fbp", seed0=5)
    sizes = []
    for seed in range(6):
        ph = src._phantom("radial", seed)
        assert ph.shape == (64, 64) and np.array_equal(ph, src._phantom("radial", seed))
        cols = np.flatnonzero(ph.any(axis=0))
        assert 0 < cols.size <= round(0.6 * 64) and cols[0] >= 64 * 0.2 - 1
        sizes.append(cols.size)
    assert len(set(sizes)) > 1  # drawn per pair
    full = SimulatedPairs(DataConfig(image_size=64, patch=16), "fbp", seed0=5)._phantom("radial", 0)
    assert np.flatnonzero(full.any(axis=0)).size > 0.8 * 64
    with pytest.raises(ValueError, match="fraction of the field"):
        DataConfig(object_scale=(0.0, 0.5))


@pytest.mark.skipif(importlib.util.find_spec("recon.phantoms") is None,
                    reason="phantom module not available")
def test_matrix_fills_the_empty_field_faintly():
    from recon.phantoms import make_phantom, support_mask
    from recon.train import DataConfig, SimulatedPairs

    src = SimulatedPairs(DataConfig(image_size=64, matrix=(0.1, 0.2), patch=16), "fbp", seed0=0)
    for seed in range(4):
        bare = make_phantom("cracked", 64, seed)
        with_matrix = src._phantom("cracked", seed)
        added = with_matrix - bare
        solid = bare >= 0.01 * bare.max()
        assert not added[solid].any() and not added[~support_mask(64)].any()
        assert added.max() <= 0.2 * 1.4 * np.median(bare[solid]) + 1e-7
        assert (added > 0).mean() > 0.02  # a real region, not a few pixels
        assert np.array_equal(with_matrix, src._phantom("cracked", seed))


@pytest.mark.skipif(importlib.util.find_spec("recon.phantoms") is None,
                    reason="phantom module not available")
def test_matrix_stays_out_of_cracks_and_cells():
    """The default medium never enters the sample's outline: a crack or an enclosed cell
    stays empty (the old "empty" fill greyed them, and models trained on it greyed cracks)."""
    from recon.phantoms import make_phantom
    from recon.train import DataConfig, SimulatedPairs, sample_outline

    n = 96
    outside = SimulatedPairs(DataConfig(image_size=n, matrix=(0.3, 0.3), patch=16), "fbp", seed0=0)
    anywhere = SimulatedPairs(DataConfig(image_size=n, matrix=(0.3, 0.3), matrix_region="empty",
                                         patch=16), "fbp", seed0=0)
    filled_before = 0
    for family in ("network", "cracked", "radial"):
        for seed in range(3):
            bare = make_phantom(family, n, seed)
            inside = sample_outline(bare)
            assert inside.mean() < 0.95
            added = outside._phantom(family, seed) - bare
            assert not added[inside].any()
            filled_before += int(((anywhere._phantom(family, seed) - bare)[inside] > 0).sum())
    assert filled_before > 100  # the old fill did enter the outline


def test_sample_outline_fills_holes_and_bridges_cracks():
    from recon.train import sample_outline

    img = np.zeros((64, 64), np.float32)
    yy, xx = np.mgrid[:64, :64]
    disk = (yy - 32) ** 2 + (xx - 32) ** 2 <= 20 ** 2
    img[disk] = 1.0
    img[(yy - 32) ** 2 + (xx - 32) ** 2 <= 5 ** 2] = 0.0  # an enclosed pore
    img[30:33, 32:] = 0.0                                  # a 3-px crack open to the surface
    outline = sample_outline(img)
    assert not (outline & ~disk).any()
    assert outline[(yy - 32) ** 2 + (xx - 32) ** 2 <= 18 ** 2].all()  # pore and crack inside
    assert (disk & ~outline).sum() <= 6  # at most the crack's mouth at the surface


def test_init_starts_from_a_trained_model(tmp_path):
    first = train(_cfg(steps=20), tmp_path / "a", progress=False)
    raw = json.loads(json.dumps(TINY))
    raw["training"].update(steps=10)
    raw["init"] = "a/tiny.safetensors"
    cfg, run = load_config(_write(tmp_path, {**raw, "run_dir": "b"}))
    assert Path(cfg.init).is_absolute()
    second = train(cfg, run, progress=False)
    start = _rows(run)[0]
    # step 0 of the fine-tune is the first model: same validation pairs, same weights
    assert start["val_psnr"] == pytest.approx(first.validation["val_psnr"], abs=1e-4)
    card = load_model(second.weights).card
    assert card["init"]["steps"] == 20 and len(card["init"]["weights_sha256"]) == 64
    third = {**raw, "init": "b/tiny.safetensors", "run_dir": "d", "training": {**raw["training"], "steps": 5}}
    third = load_model(train(*load_config(_write(tmp_path, third)), progress=False).weights)
    assert third.card["init"]["steps"] == 30 and third.label.endswith("(30+5 steps)")  # all steps behind it
    raw["model"] = {**raw["model"], "nf": 12}
    cfg, run = load_config(_write(tmp_path, {**raw, "run_dir": "c"}))
    with pytest.raises(FlytomoError, match="architecture differs"):
        train(cfg, run, progress=False)
    assert not run.exists()  # refused before any pair is simulated or file written


def test_deeper_run_starts_from_a_shallower_init(tmp_path):
    """A model section with more RRDB blocks than the init (all else equal) starts as the
    init exactly (step-0 validation equal), trains, and records where it grew from."""
    first = train(_cfg(steps=20), tmp_path / "a", progress=False)
    raw = json.loads(json.dumps(TINY))
    raw["training"].update(steps=10)
    raw["init"] = "a/tiny.safetensors"
    raw["model"] = {**raw["model"], "nb": raw["model"]["nb"] + 2}
    cfg, run = load_config(_write(tmp_path, {**raw, "run_dir": "deep"}))
    deep = train(cfg, run, progress=False)
    assert _rows(run)[0]["val_psnr"] == pytest.approx(first.validation["val_psnr"], abs=1e-4)
    card = load_model(deep.weights).card
    assert card["init"]["deepened_from_nb"] == TINY["model"]["nb"]
    assert card["architecture"]["nb"] == TINY["model"]["nb"] + 2


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None
                        for m in ("recon.phantoms", "recon.methods", "recon.simulate")),
                    reason="simulation modules not available")
def test_pair_workers_make_the_same_pairs(tmp_path):
    from recon.train import DataConfig, SimulatedPairs, build_pair_set

    data = DataConfig(image_size=32, n_angles=(16, 24), n_sub=2, patch=16, slices_per_scan=2)
    src = SimulatedPairs(data, "fbp", seed0=9)
    one = build_pair_set(src, 5, None)
    two = build_pair_set(src, 5, tmp_path / "pairs", {"k": 1}, workers=2)
    assert np.array_equal(one.truths, two.truths)  # inputs: float rounding of 1 vs 2 threads
    assert np.abs(one.inputs - two.inputs).max() < 1e-5 * np.abs(one.inputs).max()
    assert [p["group"] for p in two.params] == [0, 0, 1, 1, 2]


_KILLED_PARENT = """
import sys
from pathlib import Path
from recon.train import DataConfig, SimulatedPairs, build_pair_set
if __name__ == "__main__":
    data = DataConfig(image_size=64, n_angles=(200, 240), n_sub=4, patch=16, slices_per_scan=2)
    build_pair_set(SimulatedPairs(data, "mlem-flyscan", seed0=9), 400, Path(sys.argv[1]), {}, workers=2)
"""


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None
                        for m in ("recon.phantoms", "recon.methods", "recon.simulate")),
                    reason="simulation modules not available")
def test_pair_workers_exit_with_a_killed_parent(tmp_path):
    import subprocess
    import sys
    import time

    script = tmp_path / "make_pairs.py"
    script.write_text(_KILLED_PARENT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "pairs")], cwd=ROOT)

    def children() -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    deadline = time.monotonic() + 60
    while len(children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    workers = children()
    assert len(workers) >= 2, "the pair workers never started"
    proc.kill()  # SIGKILL: no chance to clean up (a node failure, an OOM kill)
    proc.wait()
    deadline = time.monotonic() + 20
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [p for p in workers if Path(f"/proc/{p}").exists()
                 and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]]
    assert not alive, f"orphaned pair workers {alive}"


def test_sigterm_checkpoints_and_stops(tmp_path, monkeypatch):
    import signal

    import recon.train as rt

    original = rt.sample_batch

    def batch_then_term(*args, **kw):
        if args[5] == 3:  # step index 3: a SIGTERM arrives (Slurm pre-emption)
            signal.raise_signal(signal.SIGTERM)
        return original(*args, **kw)

    monkeypatch.setattr(rt, "sample_batch", batch_then_term)
    before = signal.getsignal(signal.SIGTERM)
    result = train(_cfg(steps=10, validate_every=100), tmp_path / "run", progress=False)
    assert result.status == "stopped" and result.step == 4
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 4
    assert signal.getsignal(signal.SIGTERM) == before  # handler restored


def test_time_limit_stops_with_a_checkpoint(tmp_path):
    cfg = _cfg(steps=5, validate_every=100)
    result = train(cfg, tmp_path / "run", progress=False, time_limit_s=0)  # while the pairs are made
    assert result.status == "stopped" and result.step == 0
    assert result.note.startswith(f"1 of {cfg.data.n_train} train pairs made, kept in ")
    assert train(cfg, tmp_path / "run", progress=False, stop_at_step=1).step == 1
    result = train(cfg, tmp_path / "run", progress=False, time_limit_s=0)  # while it trains
    assert result.status == "stopped" and result.step == 2 and result.note == ""
    assert train(cfg, tmp_path / "run", progress=False).step == 5


def test_shipped_models_are_reproducible_from_their_configs():
    """Every shipped model's card records the config that made it: the job file in jobs/
    resolves to the same training, data, input and architecture."""
    from recon.rrdb import build_model
    from recon.train import DataConfig, OptimConfig, model_config
    from recon.weights import default_weights_path

    for kind, job in (("mlem-flyscan", "train-mlem-patch-long2.yaml"), ("mlem-flyscan+fbp", "train-mlem-fbp.yaml")):
        card = json.loads(default_weights_path(kind).with_suffix(".json").read_text())
        cfg, _ = load_config(ROOT / "jobs" / job)
        assert card["name"] == cfg.name and card["input_kind"] == cfg.input_kind == kind
        assert card["normalization"] == cfg.normalization
        assert card["architecture"] == build_model(model_config(cfg)).config
        data = {k: v for k, v in card["data"].items() if k not in ("train_seed0", "validation_seed0")}
        defaults = DataConfig().model_dump(mode="json")  # keys added after the model was made
        assert data == {k: v for k, v in cfg.data.model_dump(mode="json").items()
                        if k in data or v != defaults[k]}
        training = {k: v for k, v in card["training"].items()
                    if k not in ("seed", "optimizer", "device", "mixed_precision")}
        t_defaults = OptimConfig().model_dump(mode="json")
        assert training == {k: v for k, v in cfg.training.model_dump(mode="json").items()
                            if k in training or v != t_defaults[k]}
        assert card["steps"] == cfg.training.steps
        if cfg.init:  # a fine-tune: its starting model is the export of another job file
            assert card["init"]["weights"] == Path(cfg.init).name


def test_crack_weights_mark_thin_gaps_in_solid_only():
    from recon.train import crack_weights, pixel_loss

    t = torch.zeros(1, 1, 48, 48)
    t[0, 0, 8:40, 8:40] = 2.0          # a solid square on open background
    t[0, 0, 8:40, 23:25] = 0.0         # a 2-px crack through it
    w = crack_weights(t, 4.0)
    assert torch.allclose(w[0, 0, 20, 23:25], torch.tensor(5.0))   # full weight in the crack
    assert torch.allclose(w[0, 0, 20, 12], torch.tensor(1.0))      # solid
    assert torch.allclose(w[0, 0, 2, 2], torch.tensor(1.0))        # open background
    assert torch.allclose(w[0, 0, 20, 8], torch.tensor(1.0))       # the square's edge
    assert torch.equal(crack_weights(t, 0.0), torch.ones_like(t))
    out = t + 0.1
    assert torch.isclose(pixel_loss("l1")(out, t), torch.tensor(0.1))
    assert torch.isclose(pixel_loss("l1", 4.0)(out, t), torch.tensor(0.1))  # uniform error: same
    out[0, 0, 8:40, 23:25] += 0.5      # error only in the crack costs more when weighted
    assert pixel_loss("l1", 4.0)(out, t) > pixel_loss("l1")(out, t)


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None
                        for m in ("recon.phantoms", "recon.methods", "recon.simulate")),
                    reason="simulation modules not available")
def test_two_channel_run_widens_a_one_channel_init(tmp_path):
    """mlem-flyscan+fbp pairs stack both reconstructions of one scan; a one-channel
    mlem-flyscan model starts the run with the FBP channel at zero (step 0 = that model)
    and training then learns (validation loss falls)."""
    from recon.methods import reconstruct  # noqa: F401 - the simulated source needs it
    from recon.train import DataConfig, SimulatedPairs

    data = {"source": "simulated", "image_size": 32, "n_angles": [16, 24], "n_sub": 2, "patch": 32,
            "slices_per_scan": 2, "n_train": 4, "n_validation": 2, "method_options": {"iterations": 4}}
    src = SimulatedPairs(DataConfig(**{k: v for k, v in data.items() if k not in ("source",)}),
                         "mlem-flyscan+fbp", seed0=5)
    one = SimulatedPairs(DataConfig(**{k: v for k, v in data.items() if k not in ("source",)}),
                         "mlem-flyscan", seed0=5)
    x, y, _ = src(1)
    assert x.shape == (2, 32, 32) and y.shape == (32, 32)
    with pytest.raises(FlytomoError, match="take no option itrations"):  # a typo is not dropped
        SimulatedPairs(DataConfig(image_size=32, patch=16, method_options={"itrations": 4}), "mlem-flyscan+fbp", 0)
    with pytest.raises(FlytomoError, match="data.method_options: option iterations must be an integer ≥ 1"):
        SimulatedPairs(DataConfig(image_size=32, patch=16, method_options={"iterations": -3}), "mlem-flyscan", 0)
    np.testing.assert_allclose(x[0], one(1)[0], atol=1e-6)  # channel 0 is the modified MLEM
    base = {"threads": 1, "model": {"architecture": "rrdb", "nf": 8, "nb": 1, "gc": 8}, "data": data,
            "input_kind": "mlem-flyscan",
            "training": {"steps": 4, "batch": 2, "lr": 3e-3, "validate_every": 4, "checkpoint_every": 4}}
    first = train(*load_config(_write(tmp_path, {**base, "name": "one", "run_dir": "one"})), progress=False)
    two = {**base, "name": "two", "run_dir": "two", "input_kind": "mlem-flyscan+fbp", "init": "one/one.safetensors",
           "training": {**base["training"], "steps": 30, "validate_every": 10, "checkpoint_every": 10}}
    result = train(*load_config(_write(tmp_path, two)), progress=False)
    rows = _rows(tmp_path / "two")
    start = rows[0]
    # the validation pairs differ (two channels), so compare the model itself on the primary channel
    loaded = load_model(result.weights, input_kind="mlem-flyscan+fbp")
    assert loaded.card["architecture"]["in_nc"] == 2 and loaded.card["init"]["widened_from"] == "mlem-flyscan"
    assert rows[-1]["val_loss"] < start["val_loss"]
    cfg, run = load_config(_write(tmp_path, {**two, "run_dir": "zero", "training": {**two["training"], "steps": 1,
                                                                                      "lr": 1e-12, "warmup_steps": 0}}))
    widened = load_model(train(cfg, run, progress=False).weights).model
    probe = torch.rand(2, 2, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(widened(probe).numpy(), _model_out(first, probe[:, :1]), atol=1e-5)
    bad = {**two, "run_dir": "bad", "input_kind": "fbp"}
    with pytest.raises(FlytomoError, match="init model corrects 'mlem-flyscan' reconstructions"):
        train(*load_config(_write(tmp_path, bad)), progress=False)


def _model_out(result, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return load_model(result.weights).model(x).numpy()


@pytest.mark.skipif(importlib.util.find_spec("recon.phantoms") is None,
                    reason="phantom module not available")
def test_first_seed_moves_training_phantoms_not_validation():
    """data.first_seed: training pair i draws phantom seed TRAIN_SEED0 + first_seed + i; the
    validation set stays the same, and the leaves family is accepted."""
    from recon.phantoms import TRAIN_SEED0, VALIDATION_SEED0, make_phantom
    from recon.train import make_pair_sources

    raw = json.loads(json.dumps(TINY))
    raw["data"] = {"source": "simulated", "image_size": 32, "n_train": 2, "n_validation": 1,
                   "patch": 16, "n_angles": [16, 16], "n_sub": 2, "slices_per_scan": 1,
                   "families": ["leaves"], "first_seed": 500}
    cfg = TrainConfig.model_validate(raw)
    train_src, val_src = make_pair_sources(cfg)
    _, truth, params = train_src(1)
    assert params["seed"] == TRAIN_SEED0 + 501 and params["family"] == "leaves"
    assert np.array_equal(truth, make_phantom("leaves", 32, TRAIN_SEED0 + 501))
    assert val_src(0)[2]["seed"] == VALIDATION_SEED0
    raw["data"]["first_seed"] = -1
    with pytest.raises(ValidationError):
        TrainConfig.model_validate(raw)


def test_every_training_config_in_jobs_is_valid():
    """Each jobs/train*.yaml loads (strict keys, ranges, devices), and a fine-tune's init is
    another config's export or a shipped model."""
    loaded = {path.name: load_config(path) for path in sorted((ROOT / "jobs").glob("train*.yaml"))}
    assert len(loaded) >= 10
    known = {p.resolve() for p in (ROOT / "recon" / "weights").glob("*.safetensors")}
    known |= {(run_dir / f"{cfg.name}.safetensors").resolve() for cfg, run_dir in loaded.values()}
    for name, (cfg, _) in loaded.items():
        assert not cfg.init or Path(cfg.init).resolve() in known, name


def test_steps_on_the_command_line_hide_no_error_of_the_file_and_a_refused_run_leaves_no_folder(tmp_path):
    """A blind probe: ``training: 5`` with ``--steps 5`` was a TypeError traceback (exit 1), and
    ``steps: thirty`` with ``--steps 5`` trained; an unknown family was refused only after the
    run folder (config.json) was made."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\ntraining: 5\n")
    with pytest.raises(FlytomoError, match="key 'training'"):
        load_config(bad, steps=5)
    bad.write_text("name: t\ntraining:\n  steps: thirty\n")
    with pytest.raises(FlytomoError, match="key 'training.steps'"):
        load_config(bad, steps=5)
    cfg, _ = load_config(_write(tmp_path, {"name": "ok", "training": {"steps": 7}}), steps=3, device="cpu")
    assert cfg.training.steps == 3 and cfg.device == "cpu"
    fam = _write(tmp_path, {"name": "fam", "run_dir": "fam", "data": {"families": ["bogus"]}})
    with pytest.raises(FlytomoError, match="unknown phantom family bogus"):
        train(*load_config(fam), progress=False)
    assert not (tmp_path / "fam").exists()
