"""Experiment config: every problem reported at once with its key path; init; check."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hpc.cli import main
from hpc.config import check_config, load_experiment

from .conftest import flytomo, write_config


def _keys(problems):
    return {p.key for p in problems if not p.warning}


def test_every_problem_reported_with_key_paths(tmp_path, sim, capsys):
    cfg = write_config(tmp_path, sim, rows_per_chunk=0, surprise=1,
                       reconstruction={"method": "sart", "iterations": 0, "center": "centre",
                                       "blur_angle_deg": -1},
                       executor={"kind": "slurm", "threads_per_worker": 0, "dask": {"workers": 0}},
                       temperature_log=str(tmp_path / "missing.csv"),
                       scans=[str(sim.scans[0]), str(tmp_path / "nope.h5")])
    _, problems = check_config(cfg)
    keys = _keys(problems)
    expected = {"rows_per_chunk", "surprise", "reconstruction.method", "reconstruction.iterations",
                "reconstruction.center", "reconstruction.blur_angle_deg", "executor.kind",
                "executor.threads_per_worker", "executor.dask.workers", "temperature_log", "scans[1]"}
    assert expected <= keys, expected - keys
    msg = {p.key: p.message for p in problems}
    assert msg["reconstruction.iterations"].startswith("must be ≥ 1")
    assert "auto" in msg["reconstruction.center"]

    assert main(["check", str(cfg)]) == 2
    err = capsys.readouterr().err
    for k in expected:
        assert f"{k}:" in err
    assert "nothing was run" in err


def test_file_problems_after_a_valid_schema(tmp_path, sim):
    bad_log = tmp_path / "log.csv"
    bad_log.write_text("time,temp\n1,2\n")
    cfg = write_config(tmp_path, sim, scans="raw/none_*.h5", temperature_log="log.csv",
                       executor={"dask": {"scheduler_address": "tcp://x:1", "scheduler_file": "s.json"}})
    _, problems = check_config(cfg)
    assert {"scans", "temperature_log", "executor.dask"} <= _keys(problems)
    assert any("no file matches 'raw/none_*.h5'" in p.message for p in problems)


def test_check_ok_prints_a_summary(tmp_path, sim, capsys):
    cfg = write_config(tmp_path, sim)
    assert main(["check", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and f"{len(sim.scans)} file(s)" in out and "zingers" not in out
    assert "store.zarr (new store)" in out
    cfg = write_config(tmp_path, sim, reconstruction={"remove_outliers": 0.3})
    assert main(["check", str(cfg)]) == 0
    assert "zingers      removed: samples more than 0.3 below" in capsys.readouterr().out
    cfg = write_config(tmp_path, sim, reconstruction={"remove_outliers": -1})
    assert main(["check", str(cfg)]) == 2
    assert "reconstruction.remove_outliers: must be > 0.0, got -1" in capsys.readouterr().err
    cfg = write_config(tmp_path, sim, reconstruction={"remove_outliers": True})  # `yes` in YAML
    assert main(["check", str(cfg)]) == 2
    assert "reconstruction.remove_outliers: must be a number" in capsys.readouterr().err
    cfg = write_config(tmp_path, sim, reconstruction={"remove_stripes": "sorting"})
    assert main(["check", str(cfg)]) == 0
    assert "stripes      removed: 'sorting', Vo et al. 2018's sorting method" in capsys.readouterr().out
    cfg = write_config(tmp_path, sim, reconstruction={"remove_stripes": "fw"})
    assert main(["check", str(cfg)]) == 2
    assert "reconstruction.remove_stripes:" in capsys.readouterr().err
    cfg = write_config(tmp_path, sim, reconstruction={"air_columns": 8})
    assert main(["check", str(cfg)]) == 0
    assert "air          each projection levelled by its outer 8 columns per side" in capsys.readouterr().out
    cfg = write_config(tmp_path, sim, reconstruction={"air_columns": 0})
    assert main(["check", str(cfg)]) == 0
    assert "air          no levelling, and no hint where the edges look like a beam that changed" in capsys.readouterr().out
    for bad in (-1, True, 2.5):
        cfg = write_config(tmp_path, sim, reconstruction={"air_columns": bad})
        assert main(["check", str(cfg)]) == 2
        assert "reconstruction.air_columns:" in capsys.readouterr().err
    cfg = write_config(tmp_path, sim, reconstruction={"reverse_rotation": True})
    assert main(["check", str(cfg)]) == 0
    assert "rotation     reversed: each recorded angle θ read as −θ" in capsys.readouterr().out
    cfg = write_config(tmp_path, sim, reconstruction={"reverse_rotation": "yes"})
    assert main(["check", str(cfg)]) == 2 and "reconstruction.reverse_rotation:" in capsys.readouterr().err
    cfg = write_config(tmp_path, sim, reconstruction={"correct_jitter": True})
    assert main(["check", str(cfg)]) == 0
    assert "jitter       each projection's shift off the ideal rotation measured and undone" in capsys.readouterr().out
    cfg = write_config(tmp_path, sim, reconstruction={"correct_tilt": True})
    assert main(["check", str(cfg)]) == 0
    assert "tilt         the rotation axis's lean found in bands of rows" in capsys.readouterr().out
    cfg = write_config(tmp_path, sim, reconstruction={"correct_jitter": "sometimes"})
    assert main(["check", str(cfg)]) == 2
    assert "reconstruction.correct_jitter:" in capsys.readouterr().err
    for pad, line in ((0, "field        never padded"), (12, "field        12 columns padded per side")):
        cfg = write_config(tmp_path, sim, reconstruction={"pad_columns": pad})
        assert main(["check", str(cfg)]) == 0
        assert line in capsys.readouterr().out
    for bad in (-1, True, 2.5, "yes"):
        cfg = write_config(tmp_path, sim, reconstruction={"pad_columns": bad})
        assert main(["check", str(cfg)]) == 2
        assert "reconstruction.pad_columns: must be 'auto' or a whole number" in capsys.readouterr().err


def test_yes_and_no_are_not_numbers(tmp_path, sim):
    """YAML reads yes/no/on/off as booleans; pydantic alone would take them as 1 and 0 (one
    MLEM iteration, a 1° blur) without a word. Each is refused by its key; a true/false key
    still takes them."""
    cfg = write_config(tmp_path, sim, rows_per_chunk=False,
                       reconstruction={"iterations": True, "blur_angle_deg": True,
                                       "rrdb": {"tile": True, "self_ensemble": True}},
                       analysis={"segmentation": {"sigma": True}})
    _, problems = check_config(cfg)
    msg = {p.key: p.message for p in problems}
    for key in ("rows_per_chunk", "reconstruction.iterations", "reconstruction.blur_angle_deg",
                "reconstruction.rrdb.tile", "analysis.segmentation.sigma"):
        assert msg[key].startswith("must be a number, got"), (key, msg)
    assert "reconstruction.rrdb.self_ensemble" not in msg
    assert len(problems) == 5, problems


def test_load_experiment_raises_one_line_naming_the_keys(tmp_path, sim):
    import pytest
    from recon.errors import FlytomoError

    cfg = write_config(tmp_path, sim, rows_per_chunk=-3)
    with pytest.raises(FlytomoError, match="rows_per_chunk: must be ≥ 1"):
        load_experiment(cfg)


def test_init_writes_runnable_relative_config(tmp_path, sim, monkeypatch, capsys):
    monkeypatch.chdir(sim.folder)
    out = tmp_path / "exp"
    assert main(["init", "raw/scan_*.h5", "--temperature", "raw/temperature.csv", "--out", str(out)]) == 0
    cfg = yaml.safe_load((out / "experiment.yaml").read_text())
    assert not Path(cfg["scans"]).is_absolute() and cfg["scans"].endswith("raw/scan_*.h5")
    assert cfg["reconstruction"]["method"] == "mlem-flyscan" and cfg["executor"]["kind"] == "local"
    exp, problems = check_config(out / "experiment.yaml")
    assert exp is not None and not _keys(problems)
    assert len(exp.scan_files()) == len(sim.scans)
    assert main(["init", "raw/scan_*.h5", "--out", str(out)]) == 2  # exists: refuse without --force


def test_init_that_cannot_make_a_runnable_config_exits_2(tmp_path, sim, monkeypatch, capsys):
    """A glob that matches no file: one line, exit 2, nothing written. A config with a problem
    (a log that is not there): written, to be edited, with the problem said, and exit 2, so
    `flytomo init ... && flytomo run ...` stops there."""
    monkeypatch.chdir(sim.folder)
    capsys.readouterr()
    assert main(["init", "raw/*.nxs", "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no file matches 'raw/*.nxs'" in err[0], err
    assert not (tmp_path / "none").exists()
    assert main(["init", "raw/scan_*.h5", "--timezone", "CEST", "--out", str(tmp_path / "zone")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--timezone: time zone 'CEST' is not UTC, an offset" in err[0], err
    assert not (tmp_path / "zone").exists()  # refused before the folder is made
    assert main(["init", "raw/scan_*.h5", "--temperature", "raw/no_log.csv", "--out", str(tmp_path / "draft")]) == 2
    assert "problem: temperature_log" in capsys.readouterr().out
    assert (tmp_path / "draft" / "experiment.yaml").is_file()


def test_paths_relative_to_the_config_folder(tmp_path, sim):
    cfg = write_config(tmp_path / "a", sim, copy_raw=True, scans="raw/scan_*.h5",
                       temperature_log="raw/temperature.csv")
    moved = tmp_path / "b"
    cfg.parent.rename(moved)
    exp = load_experiment(moved / "experiment.yaml")
    assert len(exp.scan_files()) == len(sim.scans)
    assert exp.store_path == moved / "store.zarr"


def test_rrdb_options_reach_the_method(tmp_path, sim):
    """reconstruction.rrdb (tile, self_ensemble, model, blend) becomes the rrdb method's
    options, weights files relative to the config; a self_ensemble that is not a boolean, a
    missing weights file or a blend weight outside (0, 1) is a config problem, named by its key
    path."""
    cfg = write_config(tmp_path, sim, reconstruction={"method": "rrdb", "rrdb": {"tile": 64, "self_ensemble": True,
                                                                                   "amp": True, "zoom": 2}})
    assert load_experiment(cfg).method_options() == {"tile": 64, "self_ensemble": True, "amp": True, "zoom": 2}
    for zoom in (0.5, "big", True):
        bad = write_config(tmp_path / f"z{zoom}", sim, reconstruction={"method": "rrdb", "rrdb": {"zoom": zoom}})
        assert any("reconstruction.rrdb.zoom" in str(p) and "'auto' or a number from 1 to 4" in str(p)
                   for p in check_config(bad)), zoom
    bad = write_config(tmp_path / "bad", sim, reconstruction={"method": "rrdb", "rrdb": {"self_ensemble": "often"}})
    problems = check_config(bad)
    assert any("reconstruction.rrdb.self_ensemble" in str(p) for p in problems), problems
    blend = write_config(tmp_path / "blend", sim, reconstruction={
        "method": "rrdb", "rrdb": {"model": "nets/a.safetensors", "blend": "seed:nets/b.pth", "blend_weight": 0.4}})
    (blend.parent / "nets").mkdir()
    for name in ("a.safetensors", "b.pth"):
        (blend.parent / "nets" / name).write_bytes(b"")  # present: the files' contents are the method's
    assert load_experiment(blend).method_options() == {  # weights files relative to the config
        "model": str(blend.parent / "nets" / "a.safetensors"),
        "blend": "seed:" + str(blend.parent / "nets" / "b.pth"), "blend_weight": 0.4}
    (blend.parent / "nets" / "b.pth").unlink()
    problems = [str(p) for p in check_config(blend)]
    assert not any("reconstruction.rrdb.model" in p for p in problems), problems
    assert any("reconstruction.rrdb.blend" in p and "b.pth" in p for p in problems), problems
    heavy = write_config(tmp_path / "heavy", sim, reconstruction={"method": "rrdb", "rrdb": {"blend_weight": 1.5}})
    assert any("reconstruction.rrdb.blend_weight" in str(p) for p in check_config(heavy))


def test_the_flyscan_operator_reaches_modified_mlem(tmp_path, sim):
    """reconstruction.operator: subangle becomes mlem-flyscan's option; on another method it is a
    warning (nothing takes it); an unknown one is a problem named by its key."""
    cfg = write_config(tmp_path, sim, reconstruction={"method": "mlem-flyscan", "operator": "subangle"})
    assert load_experiment(cfg).method_options() == {"operator": "subangle"}
    fbp = write_config(tmp_path / "fbp", sim, reconstruction={"method": "fbp", "operator": "subangle"})
    problems = check_config(fbp)[1]
    assert [p.warning for p in problems if p.key == "reconstruction.operator"] == [True]
    assert load_experiment(fbp).method_options() == {}
    bad = write_config(tmp_path / "bad", sim, reconstruction={"operator": "exact"})
    assert any(p.key == "reconstruction.operator" and not p.warning for p in check_config(bad)[1])


def test_check_reports_scans_outside_the_temperature_log(tmp_path, sim):
    short = tmp_path / "short.csv"
    short.write_text("time_s,temperature_C\n0,400\n10,400\n")
    cfg = write_config(tmp_path, sim, temperature_log=str(short), analysis={"enabled": True})
    _, problems = check_config(cfg)
    p = [p for p in problems if p.key == "temperature_log"]
    assert p and not p[0].warning and "outside the temperature log" in p[0].message
    # run refuses it before any work (it reconstructed everything, then the analysis failed, exit 1)
    assert main(["run", str(cfg), "--no-progress"]) == 2
    assert not (tmp_path / "store.zarr" / "0").exists()
    cfg = write_config(tmp_path, sim, temperature_log=str(short), analysis={"enabled": True, "extrapolate": True})
    _, problems = check_config(cfg)
    assert all(p.warning for p in problems if p.key == "temperature_log")


def test_a_key_given_twice_is_refused_in_one_line(tmp_path, sim, capsys):
    """PyYAML keeps the last of two equal keys; a config that sets one twice is refused,
    naming the file, the key and both lines, and nothing is run or written."""
    cfg = write_config(tmp_path, sim)
    lines = cfg.read_text().splitlines()
    method = next(i for i, s in enumerate(lines) if s.strip().startswith("method:"))
    lines.insert(method + 1, lines[method].replace("fbp", "mlem"))
    cfg.write_text("\n".join(lines) + "\n")
    for command in (["check", str(cfg)], ["run", str(cfg)]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert str(cfg) in err and f"key 'method' is given twice, on lines {method + 1} and {method + 2}" in err
    assert not (tmp_path / "store.zarr").exists()


def test_strict_yaml_keeps_safe_load_semantics():
    """The strict loader parses what safe_load parses (merge keys may be overridden, as YAML
    allows), refuses duplicates in flow mappings too, and builds no Python objects."""
    import pytest

    from recon.yamlfile import load_yaml, yaml_problem

    text = "base: &b {p: 1, q: 2}\nd:\n  <<: *b\n  p: 5\nlist: [1, 2.5, x, null, true]\n"
    assert load_yaml(text) == yaml.safe_load(text) == {
        "base": {"p": 1, "q": 2}, "d": {"p": 5, "q": 2}, "list": [1, 2.5, "x", None, True]}
    with pytest.raises(yaml.YAMLError) as err:
        load_yaml("x: {a: 1, a: 2}\n")
    assert yaml_problem(err.value) == "key 'a' is given twice, on lines 1 and 1; keep one"
    with pytest.raises(yaml.YAMLError, match="could not determine a constructor"):
        load_yaml("!!python/object/apply:os.system [echo hi]\n")
    with pytest.raises(yaml.YAMLError) as err:
        load_yaml("a: [1\nb: 2\n")
    assert yaml_problem(err.value).startswith("line 2, column 2: expected ',' or ']'")


def test_a_store_path_on_the_scans_or_on_other_things_is_refused(tmp_path, sim):
    """`output: raw` (the scans' folder) passed check, `run` wrote its store among the scans and
    `run --restart` then emptied the folder, scans and log with it. Now check and run refuse
    it, and a folder of other things, before anything is written or removed."""
    cfg = write_config(tmp_path, sim, copy_raw=True, output="raw")
    before = sorted(q.name for q in (tmp_path / "raw").iterdir())
    for args in (("check", cfg), ("run", cfg, "--no-progress"), ("run", cfg, "--restart", "--no-progress")):
        r = flytomo(*args)
        assert r.returncode == 2 and "holds the input" in r.stderr and "a folder of its own" in r.stderr, r.stderr
    assert sorted(q.name for q in (tmp_path / "raw").iterdir()) == before
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("keep")
    cfg = write_config(tmp_path, sim, output="notes")
    r = flytomo("run", cfg, "--restart", "--no-progress")
    assert r.returncode == 2 and "is a folder of other things (a.txt), not a store" in r.stderr, r.stderr
    assert (other / "a.txt").read_text() == "keep"


def test_a_typo_in_the_jobqueue_settings_is_found_by_check(tmp_path, sim):
    """executor.dask.jobqueue goes to SLURMCluster(**settings) as it is: a misspelt key passed
    check and submit and failed only inside the queued driver job."""
    pytest.importorskip("dask_jobqueue")
    cfg = write_config(tmp_path, sim, executor={"kind": "dask", "dask": {"jobqueue": {
        "jobs": 2, "walltme": "01:00:00", "job_extra_directivs": ["--gpus=1"], "interface": "lo"}}})
    r = flytomo("check", cfg)
    assert r.returncode == 2
    assert "executor.dask.jobqueue.walltme: not a dask_jobqueue.SLURMCluster setting (did you mean walltime?)" in r.stderr
    assert "executor.dask.jobqueue.job_extra_directivs: not a dask_jobqueue.SLURMCluster setting (did you mean " \
           "job_extra_directives?)" in r.stderr
    assert "interface" not in r.stderr.replace("jobqueue.", "")


def test_a_closed_pipe_ends_quietly(tmp_path, sim):
    """`flytomo check ... | head -1`: the reader has gone; no traceback, exit 141 as a shell tool."""
    import os
    import subprocess
    import sys

    cfg = write_config(tmp_path, sim)
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to stdout fails with EPIPE
    try:
        r = subprocess.run([sys.executable, "-m", "hpc.cli", "check", str(cfg)], stdout=write_end,
                           stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    assert r.returncode == 141 and "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr


def test_cuda_without_a_gpu_is_refused_where_the_units_run_here(tmp_path, sim):
    """A blind probe: device cuda on a machine without a GPU passed `check` (a warning) and
    `run` made the store and failed every unit, saying to retry. Where this machine runs the
    units (local, a LocalCluster) it is a problem now, before anything is made; where they run
    elsewhere (a scheduler, Slurm jobs, `flytomo submit`) still a warning."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = write_config(tmp_path, sim, executor={"device": "cuda"})
    _, problems = check_config(cfg)
    bad = [p for p in problems if p.key == "executor.device"]
    assert len(bad) == 1 and not bad[0].warning and "use device: cpu" in bad[0].message
    with pytest.raises(Exception, match="executor.device: cuda asked for, but torch sees no GPU"):
        load_experiment(cfg)
    assert not (tmp_path / "store.zarr").exists()
    _, problems = check_config(cfg, units_here=False)
    assert [p.warning for p in problems if p.key == "executor.device"] == [True]
    cfg = write_config(tmp_path, sim, executor={"device": "cuda", "kind": "dask",
                                                "dask": {"scheduler_address": "tcp://gpu-node:8786"}})
    _, problems = check_config(cfg)
    assert [p.warning for p in problems if p.key == "executor.device"] == [True]


def test_options_a_method_does_not_use_are_said_to_be_unused(tmp_path, sim):
    """A blind probe: `window: hann` with mlem-flyscan passed check without a note."""
    cfg = write_config(tmp_path, sim, reconstruction={"method": "mlem-flyscan", "window": "hann"})
    _, problems = check_config(cfg)
    assert [str(p) for p in problems if p.key == "reconstruction.window"] == [
        "reconstruction.window: method mlem-flyscan uses no FBP filter window: unused"]
    assert all(p.warning for p in problems if p.key == "reconstruction.window")


def test_mlem_stopped_far_early_before_a_crack_analysis_gets_a_warning(tmp_path, sim):
    """Blind probes V and W: `iterations: 10` with mlem-flyscan read 0 % cracks in every scan
    (truth up to 9.5 %), every row "ok", no word. check, and run before its analysis, warn; 42 of
    70 (60 %), no analysis, or fbp: nothing said."""
    from hpc.config import few_iterations_problem

    short = write_config(tmp_path / "a", sim, reconstruction={"method": "mlem-flyscan", "iterations": 10},
                         analysis={"enabled": True})
    _, problems = check_config(short)
    said = [p for p in problems if p.key == "reconstruction.iterations"]
    assert len(said) == 1 and said[0].warning and said[0].message.startswith(
        "10 is far under mlem-flyscan's 70: MLEM stopped this early leaves thin cracks"), said
    for changes in ({"reconstruction": {"method": "mlem-flyscan", "iterations": 42}, "analysis": {"enabled": True}},
                    {"reconstruction": {"method": "mlem-flyscan", "iterations": 10}},  # analysis off
                    {"reconstruction": {"method": "mlem", "iterations": 30}, "analysis": {"enabled": True}}):
        cfg = write_config(tmp_path / "b", sim, **changes)
        assert few_iterations_problem(load_experiment(cfg).config) is None, changes
    r = flytomo("run", short, "--no-progress")
    assert r.returncode == 0 and "warning: reconstruction.iterations: 10 is far under" in r.stderr, r.stderr[-2000:]


def test_a_center_off_the_detector_is_found_by_check_and_said_once_by_run(tmp_path, sim):
    """A blind probe: `center: 500` on a narrow detector passed check (and submit), and run
    then failed with one long line repeating the reason per scan."""
    from hpc.config import load_experiment
    from hpc.engine import run_experiment
    from recon.errors import FlytomoError

    cfg = write_config(tmp_path, sim, reconstruction={"center": 500})
    _, problems = check_config(cfg)
    msg = {p.key: p.message for p in problems}
    assert msg["reconstruction.center"].startswith("500 is outside the detector's columns 0-"), msg
    with pytest.raises(FlytomoError, match=rf"no scan could be opened: every one of the {len(sim.scans)} says: "
                                           r"center 500 is outside"):
        run_experiment(load_experiment(cfg), progress=False)


def test_a_misspelt_key_gets_the_nearest_known_one(tmp_path, sim):
    cfg = write_config(tmp_path, sim, rows_per_chunks=8, executer={"kind": "local"},
                       reconstruction={"iteration": 5}, analysis={"segmentation": {"closing_radus": 3}},
                       frobnicate=1)
    _, problems = check_config(cfg)
    msg = {p.key: p.message for p in problems}
    assert msg["rows_per_chunks"] == "unknown key (did you mean 'rows_per_chunk'?)"
    assert msg["executer"] == "unknown key (did you mean 'executor'?)"
    assert msg["reconstruction.iteration"] == "unknown key (did you mean 'iterations'?)"
    assert msg["analysis.segmentation.closing_radus"] == "unknown key (did you mean 'closing_radius'?)"
    assert msg["frobnicate"] == "unknown key"


def test_init_with_an_escaped_glob_writes_the_folder_it_names(tmp_path, sim):
    """A blind probe: `flytomo init "bt [[]42]/raw/scan_*.h5" --out "bt [42]/abs"` (the escape
    init's own hint asks for) wrote `../../bt [[]42]/raw/scan_*.h5`, which climbs out and back in
    by name: a copy of the folder read the first one's scans."""
    import shutil

    import yaml

    raw = tmp_path / "bt [42]" / "raw"
    raw.mkdir(parents=True)
    for f in sim.scans[:2]:
        shutil.copy(f, raw)
    assert main(["init", str(tmp_path / "bt [[]42]" / "raw" / "scan_*.h5"), "--out", str(tmp_path / "bt [42]" / "abs")]) == 0
    cfg = yaml.safe_load((tmp_path / "bt [42]" / "abs" / "experiment.yaml").read_text())
    assert cfg["scans"] == "../raw/scan_*.h5"
    shutil.copytree(tmp_path / "bt [42]", tmp_path / "bt2 [42]")
    shutil.rmtree(tmp_path / "bt [42]")
    assert main(["check", str(tmp_path / "bt2 [42]" / "abs" / "experiment.yaml")]) == 0


def test_gpus_asked_of_jobqueue_with_a_cpu_device_get_a_warning(tmp_path, sim):
    """A blind probe: GPUs in job_extra_directives with device: cpu left them idle, silently."""
    pytest.importorskip("dask_jobqueue")
    cfg = write_config(tmp_path, sim, executor={"kind": "dask", "dask": {"jobqueue": {
        "jobs": 2, "job_extra_directives": ["--gpus-per-node=1"]}}})
    _, problems = check_config(cfg)
    warn = [p for p in problems if p.key == "executor.device"]
    assert len(warn) == 1 and warn[0].warning and "leave them idle" in warn[0].message


def test_a_key_in_the_wrong_section_is_told_where_it_belongs(tmp_path, sim):
    """A blind probe: reconstruction.device, reconstruction.rrdb_input, a top-level segmentation,
    analysis.temperature_log were each 'unknown key', with no word of where they go."""
    cfg = write_config(tmp_path, sim, reconstruction={"device": "cpu", "rrdb_input": "fbp"},
                       segmentation={"sigma": 1.0}, analysis={"temperature_log": "t.csv"})
    _, problems = check_config(cfg)
    msg = {p.key: p.message for p in problems}
    assert msg["reconstruction.device"] == "unknown key here (it is 'executor.device')"
    assert msg["reconstruction.rrdb_input"] == "unknown key here (it is 'reconstruction.rrdb.input')"
    assert msg["segmentation"] == "unknown key here (it is 'analysis.segmentation')"
    assert msg["analysis.temperature_log"] == "unknown key here (it is 'temperature_log')"


def test_check_finds_a_scan_still_being_written(tmp_path, sim, capsys):
    """A blind probe: check passed a file whose last 70 of 180 frames were still the fill value 0,
    which recon then refused ('projections hold no light'). check reads three rows of the last frame
    and of the frame before the last tenth; one dark last frame is a dropped frame and passes. Frames
    without light mid-scan (the beam lost), which check did not see, get a warning from 16 frames
    read across the scan."""
    import os
    import shutil
    import time

    import h5py

    scans = []
    for i, src in enumerate(sim.scans[:2]):
        scans.append(tmp_path / f"s{i}.h5")
        shutil.copy(src, scans[-1])
    with h5py.File(scans[1], "r+") as f:
        name = next(k for k in ("exchange/data", "img_tomo", "entry/instrument/detector/data") if k in f)
        n = f[name].shape[0]
        f[name][-1] = 0  # one dark last frame: a dropped frame, which recon repairs (a second probe)
    cfg = write_config(tmp_path, sim, scans=[str(s) for s in scans])
    assert main(["check", str(cfg)]) == 0
    capsys.readouterr()
    with h5py.File(scans[1], "r+") as f:
        f[name][-(n // 10):] = 0  # a tenth of the frames: recon repairs them
    assert main(["check", str(cfg)]) == 0
    capsys.readouterr()
    shutil.copy(sim.scans[1], scans[1])
    with h5py.File(scans[1], "r+") as f:
        f[name][-1] = f[name][-(n // 10 + 1)] = 0  # the last frame and one a tenth before: recon repairs two
    assert main(["check", str(cfg)]) == 0
    capsys.readouterr()
    with h5py.File(scans[1], "r+") as f:
        f[name][-(n // 10 + 1):] = 0  # more than a tenth: what recon refuses
    # written just now: a scan still being written, as run takes it (probe AE): a warning
    assert main(["check", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert f"{scans[1]}: its last projections hold no light and its file was written" in err, err
    old = time.time() - 3600  # written an hour ago: the beam lost, or a broken file: refused
    os.utime(scans[1], (old, old))
    assert main(["check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{scans[1]}: its last projections hold no light (counts" in err and str(scans[0]) not in err, err
    shutil.copy(sim.scans[1], scans[1])
    with h5py.File(scans[1], "r+") as f:
        f[name][n // 3:n // 3 + n // 4] = 0  # a quarter of the frames mid-scan: the beam lost (a probe: check passed)
    assert main(["check", str(cfg)]) == 0  # a warning: judged on 16 frames
    err = capsys.readouterr().err
    assert f"{scans[1]}: 4 of 16 projections read across it hold no light (frames " in err, err
    assert "recon will refuse it (it repairs up to 10% of a scan's frames and refuses more)" in err and str(scans[0]) not in err, err
    assert main(["recon", str(scans[1]), "--out", str(tmp_path / "x.zarr"), "--method", "fbp"]) == 2  # as it says
    assert "no light" in capsys.readouterr().err


def test_raw_scans_without_times_take_them_from_a_scan_list(tmp_path, sim, monkeypatch, capsys):
    """Blind probe W (and earlier notes): raw scans that record no start time could not be placed
    on the temperature log ("set temperature_log: null"), and the README did not say where times
    are read. init says where, and takes --scan-list: each scan's start and duration from a CSV;
    run reads the temperature at mid-scan from it."""
    import shutil

    import h5py

    from hpc.engine import run_experiment
    from hpc.store import read_attrs

    raw = tmp_path / "raw"
    raw.mkdir()
    for f in sim.scans:
        shutil.copy(f, raw / f.name)
        with h5py.File(raw / f.name, "r+") as h:
            for key in ("scan_time", "scan_duration_s"):
                if key in h:
                    del h[key]
                h.attrs.pop(key, None)
    (tmp_path / "log.csv").write_text("time_s,temperature_C\n0,20\n1000,1020\n")
    (tmp_path / "list.csv").write_text("file,time_s,duration_s\n" + "".join(
        f"{f.name},{100 * i},20\n" for i, f in enumerate(sim.scans)))
    monkeypatch.chdir(tmp_path)
    args = ["init", "raw/*.h5", "--temperature", "log.csv", "--out", "exp", "--method", "fbp"]
    assert main(args) == 2
    out = capsys.readouterr().out
    assert "records no time" in out and "scan_list: LIST.csv" in out and "flytomo init --scan-list" in out, out
    assert main([*args, "--scan-list", "list.csv", "--force"]) == 0, capsys.readouterr().out
    cfg = yaml.safe_load((tmp_path / "exp" / "experiment.yaml").read_text())
    assert cfg["scan_list"] == "../list.csv"
    cfg["analysis"]["enabled"] = False
    (tmp_path / "exp" / "experiment.yaml").write_text(yaml.safe_dump(cfg))
    assert run_experiment(load_experiment(tmp_path / "exp" / "experiment.yaml"), progress=False).complete
    scans = read_attrs(tmp_path / "exp" / cfg["output"])["scans"]
    assert [s["temperature_C"] for s in scans] == pytest.approx([30 + 100 * i for i in range(len(sim.scans))])
    assert [s["duration_s"] for s in scans] == [20.0] * len(sim.scans)


def test_a_log_counting_from_its_own_start_takes_temperature_log_start(tmp_path, sim, capsys):
    """Session 46's note: a log in seconds from its own 0 beside scans that record dates was
    refused, with no way to say when the log began. ``temperature_log_start`` (or ``init
    --log-start``) gives the date-time its 0 is; YAML's unquoted date-time is read too."""
    import shutil

    import h5py

    raw = tmp_path / "raw"
    shutil.copytree(sim.folder / "raw", raw)
    zero = 1_710_410_290.0  # 2024-03-14 09:58:10 UTC
    for scan in sorted(raw.glob("scan_*.h5")):
        with h5py.File(scan, "r+") as f:
            f["scan_time"][()] = f["scan_time"][()] + zero
    cfg = write_config(tmp_path, sim, scans=str(raw / "scan_*.h5"), temperature_log=str(raw / "temperature.csv"))
    cfg.write_text(cfg.read_text().replace("analysis:\n  enabled: false", "analysis:\n  enabled: true"))
    assert main(["check", str(cfg)]) == 2
    assert "temperature_log_start: in the experiment config" in capsys.readouterr().err
    text = "".join(line for line in cfg.read_text().splitlines(True) if not line.startswith("temperature_log_start:"))
    for start in ("2024-03-14 09:58:10", "'2024-03-14T10:58:10+01:00'", str(zero)):
        cfg.write_text(text + f"temperature_log_start: {start}\n")
        exp = load_experiment(cfg)
        assert isinstance(exp.config.temperature_log_start, (str, float)), start
        assert main(["check", str(cfg)]) == 0, capsys.readouterr().out
        capsys.readouterr()
    assert main(["init", str(raw / "scan_*.h5"), "-T", str(raw / "temperature.csv"), "--out", str(tmp_path / "i"),
                 "--log-start", "2024-03-14 09:58:10", "--timezone", "UTC"]) == 0, capsys.readouterr().out
    assert yaml.safe_load((tmp_path / "i" / "experiment.yaml").read_text())["temperature_log_start"] == \
        "2024-03-14 09:58:10"
