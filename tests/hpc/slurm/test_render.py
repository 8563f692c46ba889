"""Rendering of the job scripts (no Slurm needed): options, quoting, the command the jobs
run, what ``--dry-run`` prints. The real-Slurm tests are test_submit.py."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hpc import slurm as hs
from recon.errors import FlytomoError

#: a config path with spaces, quotes and command substitutions: none may ever run
HOSTILE = "exp dir 'q\" $(touch pwned) `touch pwned2` ; touch pwned3"


@pytest.fixture
def demo_copy(demo_experiment, tmp_path) -> Path:
    exp = tmp_path / HOSTILE
    shutil.copytree(demo_experiment, exp)
    return exp / "experiment.yaml"


def test_hostile_config_path_renders_to_valid_bash(demo_experiment, tmp_path):
    """bash -n accepts the scripts, and running their echo lines prints the path verbatim."""
    exp = tmp_path / HOSTILE
    shutil.copytree(demo_experiment, exp)
    config = exp / "experiment.yaml"
    scripts = hs.render(config, hs.SlurmOptions(ntasks_per_node=2))
    for text in (scripts.recon_script, scripts.analysis_script):
        subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    # run the scripts' echo lines in a real bash, in the experiment folder: they print the config's
    # path and the analysis command as a shell reads them (probe AE: printed unquoted, not pasteable)
    echo = next(l for l in scripts.recon_script.splitlines() if l.startswith("echo ") and "flytomo-recon: config" in l)
    out = subprocess.run(["bash", "-c", echo], cwd=exp, capture_output=True, text=True, check=True)
    assert shlex.split(out.stdout.strip().removeprefix("flytomo-recon: config ")) == [str(config)]
    echo = next(l for l in scripts.analysis_script.splitlines() if l.startswith("echo ") and "flytomo analyze" in l)
    out = subprocess.run(["bash", "-c", echo], cwd=exp, capture_output=True, text=True, check=True)
    argv = shlex.split(out.stdout.strip().removeprefix("flytomo-analyze: "))
    assert argv[:2] == ["flytomo", "analyze"] and str(exp / "analysis") in argv, argv
    for root in (tmp_path, exp):
        for name in ("pwned", "pwned2", "pwned3"):
            assert not (root / name).exists()


def test_dry_run_writes_and_submits_nothing(demo_experiment, tmp_path, capsys):
    from hpc.cli import main

    exp = tmp_path / HOSTILE
    shutil.copytree(demo_experiment, exp)
    assert main(["submit", str(exp / "experiment.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --requeue" in out and "sbatch --parsable" in out
    assert "--dependency=afterany:RECON_JOB_ID" in out and "FLYTOMO_RECON_JOB=RECON_JOB_ID" in out
    assert "#SBATCH --signal=B:USR1@120" in out and "-lt 5 ]" in out  # requeues itself 5 times
    assert not (exp / "slurm").exists()


def test_write_only_writes_the_scripts_and_a_submit_script_and_submits_nothing(demo_experiment, tmp_path, capsys):
    """Blind probe AE: an admin wanted the scripts as files, to read and edit before submitting,
    where --dry-run only prints them. --write-only writes them and submit.sh, which runs the two
    sbatch commands submit runs (run on a real Slurm in test_submit.py); paths stay quoted."""
    from hpc.cli import main

    exp = tmp_path / HOSTILE
    shutil.copytree(demo_experiment, exp)
    assert main(["submit", str(exp / "experiment.yaml"), "--write-only"]) == 0
    out = capsys.readouterr().out
    script = exp / "slurm" / "submit.sh"
    assert f"bash {shlex.quote(str(script))}" in out and "nothing submitted" in out
    assert sorted(p.name for p in (exp / "slurm").iterdir()) == ["analyze.sbatch", "recon.sbatch", "submit.sh"]
    subprocess.run(["bash", "-n", str(script)], check=True)
    lines = [line for line in script.read_text().splitlines() if line.endswith(".sbatch')")]
    assert len(lines) == 2 and '"--dependency=afterany:${recon_job}"' in lines[1]
    assert shlex.split(lines[0].removeprefix("recon_job=$(").removesuffix(")"))[-1] == str(exp / "slurm" / "recon.sbatch")
    with pytest.raises(SystemExit) as stop:
        main(["submit", str(exp / "experiment.yaml"), "--write-only", "--dry-run"])
    assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_mpi_script(demo_copy, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", "/etc/slurm dir/slurm.conf")
    s = hs.render(demo_copy, hs.SlurmOptions(nodes=2, gpus_per_node=4, partition="gpu",
                                             account="m1234", time="02:00:00"))
    text = s.recon_script
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --partition=gpu", "#SBATCH --account=m1234", "#SBATCH --time=02:00:00",
                 "#SBATCH --requeue", "#SBATCH --export=ALL", "#SBATCH --open-mode=append"):
        assert line in text
    run = next(l for l in text.splitlines() if l.startswith("srun "))
    assert run.endswith(" &")  # in the background: the shell acts on the time-limit signal
    argv = shlex.split(run.removesuffix(" &"))
    assert argv[:3] == ["srun", "--mpi=pmi2", "--kill-on-bad-exit=1"]
    flytomo = Path(os.path.abspath(sys.executable)).parent / "flytomo"
    assert argv[3] == str(flytomo)  # the submitter's own installation
    assert argv[4:] == ["run", str(demo_copy), "--executor", "mpi", "--no-analysis",
                        "--device", "cuda"]  # GPUs asked for: used; progress as lines in the job's log
    assert "export SLURM_CONF='/etc/slurm dir/slurm.conf'" in text
    # all #SBATCH lines come before the first command
    lines = text.splitlines()
    last_sbatch = max(i for i, l in enumerate(lines) if l.startswith("#SBATCH"))
    first_cmd = min(i for i, l in enumerate(lines) if l and not l.startswith("#"))
    assert last_sbatch < first_cmd
    assert s.recon_path == demo_copy.parent / "slurm" / "recon.sbatch"
    # CPUs per rank: srun asks for them again (Slurm >= 22.05 no longer passes sbatch's on) and
    # each rank's torch uses them (the config's threads_per_worker: 1 left 7 of 8 idle)
    s = hs.render(demo_copy, hs.SlurmOptions(nodes=2, gpus_per_node=4, cpus_per_task=8))
    argv = shlex.split(next(l for l in s.recon_script.splitlines() if l.startswith("srun ")).removesuffix(" &"))
    assert "--cpus-per-task=8" in argv[:5] and argv[-2:] == ["--threads", "8"]


def test_analysis_script_uses_the_configs_paths(demo_copy):
    s = hs.render(demo_copy, hs.SlurmOptions())
    line = next(l for l in s.analysis_script.splitlines() if " analyze " in l and not l.startswith("echo"))
    argv = shlex.split(line)
    exp = demo_copy.parent
    assert argv[1:3] == ["analyze", str(exp / "recon" / "experiment.zarr")]
    assert "--temperature" in argv and str(exp / "raw" / "temperature.csv") in argv


def test_container_command(demo_copy, tmp_path):
    image = tmp_path / "images dir" / "flytomo.sif"
    image.parent.mkdir()
    image.write_bytes(b"")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    s = hs.render(demo_copy, hs.SlurmOptions(container=image, gpus_per_node=2,
                                             binds=(str(scratch),)))
    run = shlex.split(next(l for l in s.recon_script.splitlines() if l.startswith("srun ")))
    i = run.index("apptainer")
    assert run[i:i + 3] == ["apptainer", "exec", "--nv"]
    assert ["--bind", str(demo_copy.parent)] == run[i + 3:i + 5]
    assert str(scratch) in run and str(image) in run
    assert run[run.index(str(image)) + 1:run.index(str(image)) + 3] == ["flytomo", "run"]
    # a host PYTHONPATH (--export=ALL) or ~/.local packages (home is bound) must not reach the image (probe)
    lines = s.recon_script.splitlines()
    assert "unset PYTHONPATH PYTHONHOME" in lines and "export PYTHONNOUSERSITE=1" in lines
    with pytest.raises(FlytomoError, match="--executor dask with --container"):
        hs.render(demo_copy, hs.SlurmOptions(container=image, executor="dask"))


def test_only_the_reconstruction_gets_the_gpus_and_both_jobs_get_mem(demo_copy, tmp_path):
    """--nv where the job has GPUs (the reconstruction), not in the analysis job, which asks
    for none; --mem on both jobs; a comma-separated --bind split as Apptainer reads it."""
    image = tmp_path / "flytomo.sif"
    image.write_bytes(b"")
    for d in ("scratch", "data"):
        (tmp_path / d).mkdir()
    s = hs.render(demo_copy, hs.SlurmOptions(container=image, gpus_per_node=2, mem="64G",
                                             binds=(f"{tmp_path}/scratch,{tmp_path}/data:/mnt/data",)))
    recon = shlex.split(next(l for l in s.recon_script.splitlines() if l.startswith("srun ")))
    analyze = shlex.split(next(l for l in s.analysis_script.splitlines() if " analyze " in l
                               and not l.startswith("echo")))
    assert "--nv" in recon and "--nv" not in analyze
    for argv in (recon, analyze):
        binds = [argv[i + 1] for i, a in enumerate(argv) if a == "--bind"]
        assert binds == [str(demo_copy.parent), f"{tmp_path}/scratch", f"{tmp_path}/data:/mnt/data"]
    # a bind whose folder is missing or relative: Apptainer refuses it as the job starts (a probe)
    for bad, words in ((f"{tmp_path}/nope", "no such file or folder"), ("b", "must be an absolute path")):
        with pytest.raises(FlytomoError, match=words):
            hs.render(demo_copy, hs.SlurmOptions(container=image, binds=(bad,)))
    for text in (s.recon_script, s.analysis_script):
        assert "#SBATCH --mem=64G" in text.splitlines()


def test_a_folder_apptainer_cannot_bind_is_refused(demo_experiment, tmp_path):
    """Apptainer splits --bind on ',' and ':': a config folder holding one cannot be bound."""
    exp = tmp_path / "run 3,4"
    shutil.copytree(demo_experiment, exp)
    image = tmp_path / "flytomo.sif"
    image.write_bytes(b"")
    with pytest.raises(FlytomoError, match=r"run 3,4: cannot be bound into the container"):
        hs.render(exp / "experiment.yaml", hs.SlurmOptions(container=image))
    assert hs.render(exp / "experiment.yaml", hs.SlurmOptions()).recon_script  # no container: fine


def test_a_symlinked_data_root_is_bound_where_the_commands_name_it(demo_experiment, tmp_path):
    """A blind probe: with /data -> /gpfs/..., the jobs ran `flytomo run /data/...` while
    /gpfs/... was bound: inside the container /data/... did not exist. The folder is bound from
    where it really is to the path the commands name."""
    real = tmp_path / "gpfs" / "bt42"
    shutil.copytree(demo_experiment, real)
    (tmp_path / "data").symlink_to(tmp_path / "gpfs")
    image = tmp_path / "flytomo.sif"
    image.write_bytes(b"")
    s = hs.render(tmp_path / "data" / "bt42" / "experiment.yaml", hs.SlurmOptions(container=image))
    run = shlex.split(next(l for l in s.recon_script.splitlines() if l.startswith("srun ")))
    binds = [run[i + 1] for i, a in enumerate(run) if a == "--bind"]
    assert binds[0] == f"{real}:{tmp_path / 'data' / 'bt42'}"
    assert str(tmp_path / "data" / "bt42" / "experiment.yaml") in run


@pytest.mark.parametrize("name", ["dose 5%u", "run\\7"])
def test_a_folder_slurm_would_read_as_a_log_pattern_is_refused(demo_experiment, tmp_path, name):
    """A blind probe: sbatch expanded '%u' in the log path ('dose 5%u' -> 'dose 5root'), and
    dropped a backslash; the job failed as it started, with no log, and submit had said it was
    submitted. Refused before anything is written or submitted."""
    exp = tmp_path / name
    shutil.copytree(demo_experiment, exp)
    with pytest.raises(FlytomoError, match=r"Slurm reads '%' and '\\' in a job's log path as patterns"):
        hs.render(exp / "experiment.yaml", hs.SlurmOptions())
    assert not (exp / "slurm").exists()


def test_a_broken_scan_is_found_before_anything_is_submitted(demo_copy):
    """submit checks what `flytomo check` checks: a truncated scan is named at once, not when
    the job has waited in the queue and run; --no-file-checks skips opening the scans."""
    from hpc.cli import main

    scan = sorted((demo_copy.parent / "raw").glob("*.h5"))[1]
    scan.write_bytes(scan.read_bytes()[:4096])
    with pytest.raises(FlytomoError) as err:
        hs.render(demo_copy, hs.SlurmOptions())
    msg = str(err.value)
    assert scan.name in msg and "nothing submitted" in msg and "\n" not in msg
    assert main(["submit", str(demo_copy), "--dry-run"]) == 2
    assert main(["submit", str(demo_copy), "--dry-run", "--no-file-checks"]) == 0
    assert not (demo_copy.parent / "slurm").exists()


def test_the_container_sees_scans_log_and_store_outside_the_config_folder(tmp_path):
    """The layout `flytomo init` writes: scans and log beside, not under, the config's folder
    (`../data dir/raw/*.h5`), the store elsewhere again (`../store dir/s.zarr`). Each folder is
    bound once, resolved (no `..`), nested ones dropped. (Only the config's folder was bound, and
    `cfg/../store dir` counted as inside `cfg`.)"""
    from hpc.cli import main

    data = tmp_path / "data dir" / "raw"
    assert main(["simulate-experiment", str(tmp_path / "sim"), "--size", "16", "--scans", "2", "--angles", "12",
                 "-q"]) == 0
    data.mkdir(parents=True)
    for f in (tmp_path / "sim" / "raw").iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    cfg = tmp_path / "cfg dir"
    assert main(["init", str(data / "*.h5"), "-T", str(data / "temperature.csv"), "--out", str(cfg),
                 "--output", "../store dir/s.zarr"]) == 0
    image = tmp_path / "flytomo.sif"
    image.write_bytes(b"")
    s = hs.render(cfg / "experiment.yaml", hs.SlurmOptions(container=image))
    run = shlex.split(next(l for l in s.recon_script.splitlines() if l.startswith("srun ")))
    binds = [run[i + 1] for i, a in enumerate(run) if a == "--bind"]
    assert binds == [str(cfg), str(data), str(tmp_path / "store dir")]
    # a network of the user's, in a folder of its own, is bound too
    nets = tmp_path / "my nets"
    nets.mkdir()
    (nets / "m.safetensors").write_bytes(b"")
    import yaml

    raw = yaml.safe_load((cfg / "experiment.yaml").read_text())
    raw["reconstruction"].update(method="rrdb", rrdb={"model": str(nets / "m.safetensors")})
    (cfg / "experiment.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    s = hs.render(cfg / "experiment.yaml", hs.SlurmOptions(container=image), check_files=False)
    run = shlex.split(next(l for l in s.recon_script.splitlines() if l.startswith("srun ")))
    assert [run[i + 1] for i, a in enumerate(run) if a == "--bind"][-1] == str(nets)


def test_bad_options_are_all_reported(demo_copy):
    with pytest.raises(FlytomoError) as err:
        hs.render(demo_copy, hs.SlurmOptions(partition="gpu; rm -rf ~", time="two hours",
                                             nodes=0, container=Path("/no/such.sif")))
    msg = str(err.value)
    for part in ("--partition", "--time", "--nodes", "--container"):
        assert part in msg
    assert "\n" not in msg
    with pytest.raises(FlytomoError, match=r"--mem: 'lots'"):
        hs.render(demo_copy, hs.SlurmOptions(mem="lots"))
    # the Dask driver is one task: node and rank counts are the config's jobqueue settings
    with pytest.raises(FlytomoError, match=r"--cpus-per-task, --nodes: not used with --executor dask"):
        hs.render(demo_copy, hs.SlurmOptions(executor="dask", nodes=2, cpus_per_task=4))


def test_bad_config_fails_before_anything_is_written(tmp_path):
    config = tmp_path / "experiment.yaml"
    config.write_text("scans: raw/*.h5\nbogus: 1\n")
    with pytest.raises(FlytomoError, match="bogus"):
        hs.render(config, hs.SlurmOptions())
    with pytest.raises(FlytomoError, match="no such experiment config"):
        hs.render(tmp_path / "missing.yaml", hs.SlurmOptions())
    assert not (tmp_path / "slurm").exists()


def test_analysis_disabled_gives_one_job(demo_copy):
    text = demo_copy.read_text().replace("enabled: true", "enabled: false")
    demo_copy.write_text(text)
    s = hs.render(demo_copy, hs.SlurmOptions())
    assert s.analysis_script is None


def test_dask_script_sets_jobqueue_defaults(demo_copy):
    text = demo_copy.read_text().replace("jobqueue: null", "jobqueue: {jobs: 2, interface: lo}")
    demo_copy.write_text(text)
    s = hs.render(demo_copy, hs.SlurmOptions(executor="dask", dask_interface="lo",
                                             time="30", partition="cpu"))
    text = s.recon_script
    assert "export DASK_JOBQUEUE__SLURM__INTERFACE=lo" in text
    assert "export DASK_JOBQUEUE__SLURM__QUEUE=cpu" in text
    assert "--executor dask" in text and "srun" not in text
    # the value dask reads (ast.literal_eval of the variable) is the quoted python path
    import ast

    env = subprocess.run(["bash", "-c", "\n".join(
        l for l in text.splitlines() if l.startswith("export DASK_")) + "\nenv"],
        capture_output=True, text=True, check=True).stdout
    value = next(l.split("=", 1)[1] for l in env.splitlines()
                 if l.startswith("DASK_JOBQUEUE__SLURM__PYTHON="))
    assert shlex.split(ast.literal_eval(value)) == [os.path.abspath(sys.executable)]


def test_sbatch_missing_is_one_clear_error(demo_copy, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(FlytomoError, match="sbatch: not found on PATH"):
        hs.submit(demo_copy, hs.SlurmOptions())


def test_threads_per_worker_become_cpus_per_rank(demo_copy):
    """A blind probe: threads_per_worker 8 without --cpus-per-task left each rank Slurm's one
    CPU, eight torch threads on it. The config's threads are asked for; the flag still wins."""
    import yaml

    raw = yaml.safe_load(demo_copy.read_text())
    raw.setdefault("executor", {})["threads_per_worker"] = 8
    demo_copy.write_text(yaml.safe_dump(raw, sort_keys=False))
    s = hs.render(demo_copy, hs.SlurmOptions(ntasks_per_node=2))
    assert "#SBATCH --cpus-per-task=8" in s.recon_script.splitlines()
    assert "--cpus-per-task=8 " in next(l for l in s.recon_script.splitlines() if l.startswith("srun "))
    s = hs.render(demo_copy, hs.SlurmOptions(ntasks_per_node=2, cpus_per_task=4))
    assert "#SBATCH --cpus-per-task=4" in s.recon_script.splitlines()


def test_submit_makes_the_folders_a_container_binds(demo_copy, tmp_path, monkeypatch):
    """A blind probe: a store and an analysis in folders not made yet were bound as they were,
    and Apptainer refuses a missing bind source as the job starts. submit makes them first."""
    import yaml

    raw = yaml.safe_load(demo_copy.read_text())
    raw["output"] = str(tmp_path / "stores" / "ext.zarr")
    raw.setdefault("analysis", {})["out"] = str(tmp_path / "anas" / "ext")
    demo_copy.write_text(yaml.safe_dump(raw, sort_keys=False))
    image = tmp_path / "flytomo.sif"
    image.write_bytes(b"")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text("#!/bin/sh\necho 4242\n")
    (fake / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    assert not (tmp_path / "stores").exists()
    sub = hs.submit(demo_copy, hs.SlurmOptions(container=image))
    assert sub.recon_job == "4242"
    assert (tmp_path / "stores").is_dir() and (tmp_path / "anas").is_dir()


def test_the_analysis_job_may_go_to_a_partition_of_its_own(demo_copy):
    """A blind probe: the analysis job, which asks for no GPU, inherited --partition gpu (some
    sites refuse it); --analysis-partition sends it elsewhere."""
    s = hs.render(demo_copy, hs.SlurmOptions(partition="gpu", gpus_per_node=1))
    assert "#SBATCH --partition=gpu" in s.analysis_script.splitlines()
    s = hs.render(demo_copy, hs.SlurmOptions(partition="gpu", gpus_per_node=1, analysis_partition="cpu"))
    assert "#SBATCH --partition=gpu" in s.recon_script.splitlines()
    assert "#SBATCH --partition=cpu" in s.analysis_script.splitlines()
    with pytest.raises(FlytomoError, match="--analysis-partition: 'a b' is not a Slurm partition name"):
        hs.render(demo_copy, hs.SlurmOptions(analysis_partition="a b"))


def test_two_configs_in_one_folder_keep_their_own_scripts(demo_copy):
    """A blind probe: every config of a folder wrote DIR/slurm/recon.sbatch, each over the last."""
    other = demo_copy.with_name("hot run.yaml")
    shutil.copy(demo_copy, other)
    a, b = hs.render(demo_copy, hs.SlurmOptions()), hs.render(other, hs.SlurmOptions())
    assert a.recon_path == demo_copy.parent / "slurm" / "recon.sbatch"
    assert b.recon_path == demo_copy.parent / "slurm" / "hot run" / "recon.sbatch"


def test_job_names_say_the_experiment_and_odd_options_get_a_note(demo_copy):
    """A blind probe: every job was 'flytomo-recon'/'flytomo-analyze' in squeue; 2 ranks a node
    beside 4 GPUs left 2 idle without a word; --mpi pmix was taken without saying the mpich
    wheel speaks PMI2."""
    s = hs.render(demo_copy, hs.SlurmOptions())
    folder = "exp_dir_q_touch_pwned_touch_pwned2_touch_pwned3"  # the hostile folder, Slurm-safe
    assert f"#SBATCH --job-name=flytomo-recon-{folder}"[:len("#SBATCH --job-name=") + 64] in s.recon_script
    assert "#SBATCH --job-name=flytomo-analyze-exp_dir" in s.analysis_script
    with pytest.warns(UserWarning) as caught:
        hs.render(demo_copy, hs.SlurmOptions(gpus_per_node=4, ntasks_per_node=2, mpi="pmix"))
    notes = " | ".join(str(w.message) for w in caught)
    assert "2 GPU(s) per node stay idle" in notes and "speaks PMI2" in notes


@pytest.mark.parametrize("text,seconds", [("10", 600), ("90:30", 5430), ("02:00:00", 7200), ("1-00", 86400),
                                          ("1-02:30", 95400), ("1-02:30:15", 95415), ("UNLIMITED", None)])
def test_slurm_time_limits_in_seconds(text, seconds):
    assert hs.time_limit_s(text) == seconds


def test_the_job_requeues_itself_near_its_time_limit_unless_the_limit_is_short(demo_copy):
    """A limit of 2 hours: Slurm signals the shell 120 s ahead and the trap requeues (3 times
    here); a limit of 5 minutes would be signalled at once (Slurm sends it up to a minute early):
    no signal, with a note; --max-requeues 0: none."""
    long = hs.render(demo_copy, hs.SlurmOptions(time="02:00:00", max_requeues=3))
    assert "#SBATCH --signal=B:USR1@120" in long.recon_script and long.max_requeues == 3
    assert '-lt 3 ]; then' in long.recon_script and "trap requeue_at_time_limit USR1" in long.recon_script
    with pytest.warns(UserWarning, match=r"--time 5: under 10 minutes, so the reconstruction job does not requeue"):
        short = hs.render(demo_copy, hs.SlurmOptions(time="5"))
    assert "--signal" not in short.recon_script and short.max_requeues == 0
    never = hs.render(demo_copy, hs.SlurmOptions(time="02:00:00", max_requeues=0))
    assert "--signal" not in never.recon_script
    assert "--max-requeues: must be an integer >= 0" in "; ".join(hs.check_options(hs.SlurmOptions(max_requeues=-1)))


def test_a_cuda_config_without_gpus_asked_for_is_refused_in_a_container_and_warned_about_without(demo_copy,
                                                                                                  tmp_path):
    """Blind probe AH: `device: cuda` submitted with a container and no --gpus-per-node made a job
    that asks for no GPU and runs apptainer without --nv, said only as "fine if the units run on
    GPU nodes"; its units would find no GPU. Refused now; without a container, a warning (a
    partition may give its GPUs unasked)."""
    import yaml

    raw = yaml.safe_load(demo_copy.read_text())
    raw.setdefault("executor", {})["device"] = "cuda"
    demo_copy.write_text(yaml.safe_dump(raw, sort_keys=False))
    image = tmp_path / "flytomo.sif"
    image.write_bytes(b"")
    with pytest.raises(FlytomoError, match=r"executor.device is cuda, but without --gpus-per-node the job asks for "
                                           r"no GPU and the container runs without --nv"):
        hs.render(demo_copy, hs.SlurmOptions(container=image))
    with pytest.warns(UserWarning, match=r"asks for no GPU \(fine where the partition gives its GPUs"):
        hs.render(demo_copy, hs.SlurmOptions())
    assert "--nv" in hs.render(demo_copy, hs.SlurmOptions(container=image, gpus_per_node=1)).recon_script
