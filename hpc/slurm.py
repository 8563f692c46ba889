"""Slurm submission of a whole experiment: a reconstruction job, then an analysis job.

``flytomo submit CONFIG`` renders two sbatch scripts from the templates shipped in
``hpc/templates`` (package data), writes them to ``DIR/slurm/`` next to the config, and
submits them with ``sbatch --parsable``: the reconstruction job (MPI ranks through
``srun --mpi=pmi2``, or a Dask driver whose workers dask-jobqueue's ``SLURMCluster``
starts as Slurm jobs) and an analysis job that waits for it (``--dependency=afterany``; it
analyses only after the reconstruction finished by itself: exit 0, 1 or 3). Near its time
limit the reconstruction job requeues itself (``--signal=B:USR1``, ``scontrol requeue``).

Two rules keep the scripts safe for any path a user may have:

- every value that reaches a shell line is quoted with :func:`shlex.quote`;
- nothing user-supplied reaches an ``#SBATCH`` line (sbatch parses those itself, not a
  shell): resource values there are checked against a strict pattern, and log files are
  named relative to the job's working directory, ``DIR/slurm``, which is passed to
  ``sbatch`` as an argument (``--chdir``), never through a shell.

Jobs are requeue-safe: ``#SBATCH --requeue`` and ``--open-mode=append``; a requeued or
resubmitted reconstruction resumes from the store's manifest (done units are skipped).
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from recon.errors import FlytomoError

#: executors a submitted reconstruction can use
EXECUTORS = ("mpi", "dask")
#: ``srun --mpi`` plugin types we accept (the mpich wheel speaks PMI2, not PMIx)
MPI_TYPES = ("pmi2", "pmix", "pmix_v4", "cray_shasta", "none")
#: seconds before the time limit at which Slurm signals the reconstruction job to requeue
#: itself (Slurm may signal up to 60 s earlier); flytomo stops within seconds of SIGTERM
REQUEUE_MARGIN_S = 120
#: subfolder of the config's folder that holds scripts and logs
SLURM_DIRNAME = "slurm"

_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:,+\-\[\]]+$")
_MEM = re.compile(r"^\d+[KMGTkmgt]?$")
_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+-\d+$|^(UNLIMITED|INFINITE)$")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class SlurmOptions:
    """What ``flytomo submit`` asks of Slurm.

    Attributes
    ----------
    nodes : nodes for the reconstruction job (MPI engine).
    ntasks_per_node : MPI ranks per node; default one per GPU, or 1 without GPUs.
    gpus_per_node : GPUs per node (``--gpus-per-node``); 0 requests none.
    cpus_per_task : CPUs per rank (``--cpus-per-task``); ``None`` leaves Slurm's default.
    mem : memory per node of both jobs as Slurm writes it (``64G``, ``500M``; ``0``: all of
        it); ``None`` leaves the partition's default.
    partition, time, account : passed to ``#SBATCH`` when given (``time`` as Slurm
        accepts it: ``MM``, ``HH:MM:SS``, ``D-HH:MM:SS``...).
    analysis_time : time limit of the analysis job (default: ``time``).
    analysis_partition : partition of the analysis job, which needs no GPU (default:
        ``partition``; some sites refuse a GPU partition's job that asks for none).
    container : an Apptainer image (``.sif``) the jobs run flytomo in, or ``None`` to run
        the submitter's own flytomo (same virtual environment).
    binds : extra folders to bind into the container, ``SRC[:DST]`` each (a comma-separated
        list, as Apptainer writes them, is split; the folders of the config, the scans, the
        temperature log, the store, the analysis output and a network file the config names
        are always bound).
    executor : ``"mpi"`` (srun ranks) or ``"dask"`` (SLURMCluster workers).
    mpi : ``srun --mpi`` type; ``pmi2`` for the MPICH inside the container/venv.
    overcommit : allow more ranks than CPUs (``--overcommit``), e.g. on a test node.
    dask_interface : default network interface of the Dask scheduler and worker jobs
        (``ib0``; ``lo`` on a single test machine) where ``executor.dask.jobqueue`` in the
        config sets none; ``None`` lets dask-jobqueue choose.
    max_requeues : how many times the reconstruction job requeues itself when Slurm warns
        that its time limit is near (``REQUEUE_MARGIN_S`` ahead); each start resumes from
        the store; 0: never.
    """

    nodes: int = 1
    ntasks_per_node: int | None = None
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    mem: str | None = None
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    analysis_time: str | None = None
    analysis_partition: str | None = None
    container: Path | None = None
    binds: tuple[str, ...] = ()
    executor: str = "mpi"
    mpi: str = "pmi2"
    overcommit: bool = False
    dask_interface: str | None = None
    max_requeues: int = 5

    @property
    def ranks_per_node(self) -> int:
        """MPI ranks per node: the option, else one per GPU, else one."""
        if self.ntasks_per_node:
            return self.ntasks_per_node
        return max(1, self.gpus_per_node)


@dataclass(frozen=True)
class JobScripts:
    """The rendered scripts of one submission and where they go."""

    config: Path
    store: Path
    slurm_dir: Path
    recon_path: Path
    recon_script: str
    analysis_path: Path
    analysis_script: str | None  # None when the config says analysis.enabled: false
    #: the folders bound into the container (made before submitting: Apptainer refuses a
    #: missing one, as the job starts)
    binds: tuple[Path, ...] = ()
    #: times the reconstruction job requeues itself near its time limit
    max_requeues: int = 0


@dataclass
class Submission:
    """Job ids of a submission, and the files to watch."""

    scripts: JobScripts
    recon_job: str
    analysis_job: str | None
    commands: list[list[str]] = field(default_factory=list)

    def recon_log(self) -> Path:
        return self.scripts.slurm_dir / f"recon-{self.recon_job}.out"

    def analysis_log(self) -> Path | None:
        if self.analysis_job is None:
            return None
        return self.scripts.slurm_dir / f"analyze-{self.analysis_job}.out"


# --------------------------------------------------------------------------- checks
def check_options(opts: SlurmOptions) -> list[str]:
    """Every problem with ``opts``, one message each (empty when all is well)."""
    problems = []
    for name in ("nodes", "gpus_per_node", "ntasks_per_node", "cpus_per_task"):
        value = getattr(opts, name)
        low = 0 if name == "gpus_per_node" else 1
        if value is not None and (not isinstance(value, int) or value < low):
            problems.append(f"--{name.replace('_', '-')}: must be an integer >= {low}, got {value!r}")
    for name in ("partition", "account", "analysis_partition"):
        value = getattr(opts, name)
        if value is not None and not _SAFE_VALUE.match(value):
            problems.append(f"--{name.replace('_', '-')}: {value!r} is not a Slurm {name.split('_')[-1]} name "
                            "(letters, digits and _ . : , + - only)")
    if opts.mem is not None and not _MEM.match(opts.mem):
        problems.append(f"--mem: {opts.mem!r} is not a Slurm memory size (e.g. 64G, 500M; 0: all of a node's)")
    for name in ("time", "analysis_time"):
        value = getattr(opts, name)
        if value is not None and not _TIME.match(value):
            problems.append(f"--{name.replace('_', '-')}: {value!r} is not a Slurm time "
                            "(MM, HH:MM:SS, D-HH:MM:SS)")
    if not isinstance(opts.max_requeues, int) or opts.max_requeues < 0:
        problems.append(f"--max-requeues: must be an integer >= 0, got {opts.max_requeues!r}")
    if opts.executor not in EXECUTORS:
        problems.append(f"--executor: {opts.executor!r} is not one of {', '.join(EXECUTORS)}")
    if opts.mpi not in MPI_TYPES:
        problems.append(f"--mpi: {opts.mpi!r} is not one of {', '.join(MPI_TYPES)}")
    if opts.dask_interface is not None and not re.match(r"^[A-Za-z0-9_.\-]+$", opts.dask_interface):
        problems.append(f"--dask-interface: {opts.dask_interface!r} is not an interface name")
    if opts.container is not None and not Path(opts.container).is_file():
        problems.append(f"--container: {opts.container}: no such image file")
    for value in opts.binds:  # Apptainer refuses a bind whose source is missing: at the job's start
        for part in (x.strip() for x in value.split(",") if x.strip()):
            src = part.split(":")[0]
            if not Path(src).is_absolute():
                problems.append(f"--bind: {part!r}: the folder to bind must be an absolute path")
            elif not Path(src).exists():
                problems.append(f"--bind: {src}: no such file or folder (the job would fail as it starts)")
    if opts.executor == "dask":
        # the driver job is one task on one node; the workers' resources are the config's
        asked = [f"--{n.replace('_', '-')}" for n in ("ntasks_per_node", "cpus_per_task")
                 if getattr(opts, n) is not None] + (["--nodes"] if opts.nodes != 1 else [])
        if asked:
            problems.append(f"{', '.join(asked)}: not used with --executor dask, whose driver job is one "
                            "task and whose worker jobs take executor.dask.jobqueue's settings (jobs, "
                            "cores, memory) from the config")
    return problems


def time_limit_s(text: str | None) -> int | None:
    """Seconds of a Slurm time limit (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``,
    ``D-HH:MM:SS``); None for none given or ``UNLIMITED``/``INFINITE``."""
    if text is None or text.upper() in ("UNLIMITED", "INFINITE"):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(x) for x in rest.split(":")]
    if days:  # D-HH[:MM[:SS]]
        parts += [0] * (3 - len(parts))
        return ((int(days) * 24 + parts[0]) * 60 + parts[1]) * 60 + parts[2]
    if len(parts) == 3:
        return (parts[0] * 60 + parts[1]) * 60 + parts[2]
    return parts[0] * 60 + (parts[1] if len(parts) == 2 else 0)


def requeues_at_time_limit(opts: SlurmOptions) -> int:
    """How many times the reconstruction job may requeue itself near its time limit: the
    option, or 0 where the limit is under 5 × ``REQUEUE_MARGIN_S`` (the warning would come too
    early in each start to let it do much)."""
    limit = time_limit_s(opts.time) if opts.time and _TIME.match(opts.time) else None
    return 0 if limit is not None and limit < 5 * REQUEUE_MARGIN_S else int(opts.max_requeues)


def option_notes(opts: SlurmOptions) -> list[str]:
    """Options that run, but not as meant: one note each."""
    notes = []
    if (opts.executor == "mpi" and opts.gpus_per_node and opts.ntasks_per_node
            and opts.ntasks_per_node < opts.gpus_per_node):
        notes.append(f"--ntasks-per-node {opts.ntasks_per_node} with --gpus-per-node {opts.gpus_per_node}: each "
                     f"rank uses one GPU, so {opts.gpus_per_node - opts.ntasks_per_node} GPU(s) per node stay idle "
                     "(leave --ntasks-per-node out: one rank per GPU)")
    if opts.executor == "mpi" and opts.mpi != "pmi2" and opts.container is None:
        notes.append(f"--mpi {opts.mpi}: the mpich wheel in flytomo's environment speaks PMI2 (--mpi pmi2); "
                     f"{opts.mpi} suits an mpi4py built against the site's MPI")
    if opts.max_requeues and not requeues_at_time_limit(opts):
        notes.append(f"--time {opts.time}: under {5 * REQUEUE_MARGIN_S // 60} minutes, so the reconstruction job "
                     "does not requeue itself near its limit (the same flytomo submit goes on from the store)")
    return notes


def job_name(config: Path, kind: str) -> str:
    """``flytomo-KIND-NAME`` for squeue: NAME the experiment folder's (or a config's own stem),
    reduced to Slurm-safe characters, at most 64 in all."""
    name = config.parent.name if config.stem == "experiment" else config.stem
    name = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_") or "experiment"
    return f"flytomo-{kind}-{name}"[:64]


def bind_args(folders: list[Path] | tuple, extra: tuple[str, ...] = ()) -> list[str]:
    """``--bind`` arguments of ``apptainer exec``: each of ``folders`` (bound at the same path)
    and each ``SRC[:DST[:OPTS]]`` of ``extra``, comma-separated lists split.

    Raises :class:`FlytomoError` for a folder whose path holds a comma or a colon: Apptainer
    splits a bind on them, so such a folder cannot be bound (rename it, or run without
    ``--container``)."""
    args: list[str] = []
    for folder in map(str, folders):
        real = str(Path(folder).resolve())  # a symlinked data root (/data -> /gpfs/...): bound at the path the
        if any(c in f for f in (folder, real) for c in ",:"):  # jobs' commands name, from where it really is
            raise FlytomoError(folder, "cannot be bound into the container: Apptainer splits --bind on "
                                       "',' and ':' (rename the folder, or submit with --no-container)")
        args += ["--bind", folder if real == folder else f"{real}:{folder}"]
    for value in extra:
        args += [a for part in value.split(",") if part.strip() for a in ("--bind", part.strip())]
    return args


# --------------------------------------------------------------------------- pieces
def flytomo_argv(opts: SlurmOptions, binds: list[Path] | tuple = (), *, gpus: bool = True) -> list[str]:
    """The command a job runs as ``flytomo``, as an argument list.

    Without a container: this very installation — the ``flytomo`` script next to
    ``sys.executable`` (the submitter's virtual environment), or ``python -m hpc.cli``.
    With one: ``apptainer exec [--nv] [--bind DIR]... IMAGE flytomo``; ``--nv`` where the job
    has GPUs (``gpus`` and ``opts.gpus_per_node``: the reconstruction, not the analysis).
    """
    if opts.container is not None:
        argv = ["apptainer", "exec"]
        if gpus and opts.gpus_per_node:
            argv.append("--nv")
        argv += bind_args(binds, opts.binds)
        return argv + [str(Path(opts.container).absolute()), "flytomo"]
    python = Path(os.path.abspath(sys.executable))  # not resolved: keep the venv's path
    script = python.parent / "flytomo"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(python), "-m", "hpc.cli"]


@dataclass(frozen=True)
class ExperimentInfo:
    """What submission needs to know of an experiment config."""

    store: Path
    analyze_args: list[str]
    analysis_enabled: bool = True
    #: the folders the jobs read or write, for a container's binds (:func:`bind_folders`)
    folders: tuple[Path, ...] = ()
    #: the config's executor.threads_per_worker
    threads: int = 1
    #: the config's executor.device
    device: str = "cpu"


def bind_folders(paths: list[Path]) -> tuple[Path, ...]:
    """The fewest folders that hold every one of ``paths`` (folders, absolute, without ``..``;
    symlinks kept, as the jobs' commands name them: :func:`bind_args` binds each from where it
    really is), in their first order: a folder inside another listed one is dropped."""
    given: list[Path] = []
    for path in paths:
        a = Path(os.path.abspath(path))
        if a not in given:
            given.append(a)
    return tuple(a for a in given if not any(o != a and a.is_relative_to(o) for o in given))


def read_experiment(config: Path, opts: SlurmOptions, *, open_files: bool = True) -> ExperimentInfo:
    """Validate ``config`` as ``flytomo check`` does (with ``--executor`` applied; the scans
    opened, metadata only, and the temperature log read unless ``open_files`` is False) and
    return its store and the ``flytomo analyze`` arguments. A bad config, scan or log raises
    one :class:`FlytomoError` naming every problem before anything is submitted; warnings go
    to ``stderr``."""
    from hpc import config as hpc_config
    from recon.io.readers import split_scan_ref

    raw = hpc_config.read_yaml(config)
    if opts.container is None:  # the jobs use this installation: check its engines too
        raw = hpc_config.apply_overrides(raw, executor=opts.executor)
    exp, problems = hpc_config.check_config(config, raw=raw, open_files=open_files, units_here=False)
    errors = [p for p in problems if not p.warning]
    if errors or exp is None:
        raise FlytomoError(config, "; ".join(map(str, errors))
                           + " (nothing submitted; `flytomo check` lists them one per line)")
    for p in problems:
        print(f"{config}: warning: {p}", file=sys.stderr)
    store = exp.store_path
    args = [str(store)]
    if exp.temperature_log is not None:
        args += ["--temperature", str(exp.temperature_log)]
    if exp.config.analysis.out is not None:
        args += ["--out", str(exp.analysis_out)]
    if exp.config.analysis.extrapolate:
        args.append("--extrapolate")
    folders = [config.parent, *(split_scan_ref(f)[0].parent for f in exp.scan_files()), store.parent]
    if exp.temperature_log is not None:
        folders.append(Path(exp.temperature_log).parent)
    if exp.config.analysis.out is not None:
        folders.append(Path(exp.analysis_out).parent)
    options = exp.method_options()
    for key in ("model", "blend"):  # a network of the user's, outside the shipped weights
        parts = hpc_config.weights_file(options.get(key))
        if parts:
            folders.append(Path(parts[1]).parent)
    return ExperimentInfo(store=store, analyze_args=args, analysis_enabled=bool(exp.config.analysis.enabled),
                          folders=bind_folders(folders), threads=int(exp.config.executor.threads_per_worker or 1),
                          device=exp.config.executor.device)


def _sbatch_lines(opts: SlurmOptions, *, time: str | None, gpus: bool,
                  partition: bool = True, analysis: bool = False) -> str:
    lines = []
    part = (opts.analysis_partition or opts.partition) if analysis else opts.partition
    if partition and part:
        lines.append(f"#SBATCH --partition={part}")
    if opts.account:
        lines.append(f"#SBATCH --account={opts.account}")
    if time:
        lines.append(f"#SBATCH --time={time}")
    if gpus and opts.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={opts.gpus_per_node}")
    if gpus and opts.cpus_per_task:
        lines.append(f"#SBATCH --cpus-per-task={opts.cpus_per_task}")
    if opts.mem is not None:
        lines.append(f"#SBATCH --mem={opts.mem}")
    if gpus and opts.overcommit:
        lines.append("#SBATCH --overcommit")
    return "\n".join(lines)


def _environment(opts: SlurmOptions, flytomo: list[str], *, dask: bool) -> str:
    """Shell lines setting the job's environment; every value shlex-quoted."""
    lines = []
    slurm_conf = os.environ.get("SLURM_CONF")
    if slurm_conf:  # --export=ALL carries it; this keeps a hand-run sbatch working too
        lines.append(f'if [ -z "${{SLURM_CONF:-}}" ]; then export SLURM_CONF={shlex.quote(slurm_conf)}; fi')
    if opts.container is None:
        bindir = Path(flytomo[0]).parent
        lines.append(f'export PATH={shlex.quote(str(bindir))}:"$PATH"')
    else:  # the host's Python settings (--export=ALL) and ~/.local packages (home is bound) stay outside
        lines.append("unset PYTHONPATH PYTHONHOME")
        lines.append("export PYTHONNOUSERSITE=1")
    if dask:
        # dask-jobqueue's defaults for what executor.dask.jobqueue in the config leaves
        # unset (the config wins: its keys go to SLURMCluster(**settings) directly)
        env = {"DASK_JOBQUEUE__SLURM__WALLTIME": opts.time or "01:00:00",
               "DASK_JOBQUEUE__SLURM__LOG_DIRECTORY": "dask-workers"}
        if opts.dask_interface:
            env["DASK_JOBQUEUE__SLURM__INTERFACE"] = opts.dask_interface
        if opts.partition:
            env["DASK_JOBQUEUE__SLURM__QUEUE"] = opts.partition
        if opts.account:
            env["DASK_JOBQUEUE__SLURM__ACCOUNT"] = opts.account
        if opts.gpus_per_node:
            env["DASK_JOBQUEUE__SLURM__JOB_EXTRA_DIRECTIVES"] = "['--gpus-per-node=1']"
        if opts.container is None:
            python = Path(os.path.abspath(sys.executable))
            worker_python = shlex.quote(str(python))
        else:  # worker jobs start python inside the same image
            worker_python = shlex.join(flytomo[:-1] + ["python"])
        # dask reads DASK_* values with ast.literal_eval: repr() keeps the shell quotes
        env["DASK_JOBQUEUE__SLURM__PYTHON"] = repr(worker_python)
        for key, value in env.items():
            lines.append(f"export {key}={shlex.quote(value)}")
    return "\n".join(lines)


def _fill(template: str, values: dict[str, str]) -> str:
    missing = sorted(set(_PLACEHOLDER.findall(template)) - set(values))
    if missing:
        raise KeyError(f"template placeholders without a value: {missing}")
    # a placeholder alone on its line with nothing to put there leaves no blank line
    for name, value in values.items():
        if not value:
            template = re.sub(rf"(?m)^\{{\{{{name}\}}\}}\n", "", template)
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def load_template(name: str) -> str:
    """The text of ``hpc/templates/NAME`` (package data)."""
    return resources.files("hpc").joinpath("templates", name).read_text()


def _check_dask_config(config: Path) -> None:
    """``--executor dask`` on Slurm needs ``executor.dask.jobqueue`` in the config: that is
    what makes ``flytomo run`` start its workers as Slurm jobs (dask_jobqueue.SLURMCluster)."""
    from hpc import config as hpc_config
    from recon.io.readers import split_scan_ref

    raw = hpc_config.read_yaml(config)
    dask = ((raw.get("executor") or {}).get("dask") or {}) if isinstance(raw.get("executor"), dict) else {}
    if not isinstance(dask, dict) or not dask.get("jobqueue"):
        raise FlytomoError(config, "executor.dask.jobqueue: needed for --executor dask on Slurm "
                                   "(the settings of the worker jobs, e.g. jobqueue: {jobs: 2, "
                                   "cores: 8, memory: 32GB, interface: ib0}); see docs/facility.md")


# --------------------------------------------------------------------------- render
def render(config: str | Path, opts: SlurmOptions, *, check_files: bool = True) -> JobScripts:
    """Render both job scripts for ``config``; writes nothing.

    Raises :class:`FlytomoError` naming every bad option, a missing config, or every problem
    ``flytomo check`` finds (the scans and the log are opened unless ``check_files`` is False).
    """
    config = Path(config).absolute()
    if not config.is_file():
        raise FlytomoError(config, "no such experiment config")
    problems = check_options(opts)
    if opts.container is not None and opts.executor == "dask":
        problems.append("--executor dask with --container: the Dask driver starts its worker "
                        "jobs with sbatch, which the image does not have; use --executor mpi "
                        "with a container, or --no-container with dask")
    if problems:
        raise FlytomoError("flytomo submit", "; ".join(problems))
    for note in option_notes(opts):
        warnings.warn(note, UserWarning, stacklevel=2)
    info = read_experiment(config, opts, open_files=check_files)
    if info.device == "cuda" and not opts.gpus_per_node and opts.executor == "mpi":
        # blind probe AH: a job that asks for no GPU, its container without --nv, for a config that needs one
        no_gpu = ("the config's executor.device is cuda, but without --gpus-per-node the job asks for no GPU"
                  + (" and the container runs without --nv, so its units would find none" if opts.container else ""))
        if opts.container is not None:
            raise FlytomoError(config, f"{no_gpu}: give --gpus-per-node G, or set device: cpu (nothing submitted)")
        warnings.warn(f"{config}: {no_gpu} (fine where the partition gives its GPUs without asking)",
                      UserWarning, stacklevel=2)
    if opts.executor == "mpi" and opts.cpus_per_task is None and info.threads > 1:
        # each rank runs threads_per_worker torch threads: ask Slurm for that many CPUs per rank
        # (its default, one, would put them all on one core)
        opts = dataclasses.replace(opts, cpus_per_task=info.threads)
    store = info.store
    if opts.executor == "dask":
        _check_dask_config(config)
    flytomo = flytomo_argv(opts, list(info.folders))  # the config's, scans', log's and store's folders
    # DIR/slurm/ for experiment.yaml (what init writes); DIR/slurm/STEM/ for another config in
    # the folder, whose scripts would overwrite the first's
    slurm_dir = config.parent / SLURM_DIRNAME / ("" if config.stem == "experiment" else config.stem)
    if any(c in str(slurm_dir) for c in "%\\"):  # a blind probe: 'dose 5%u' became 'dose 5root', no log at all
        raise FlytomoError(config.parent, "Slurm reads '%' and '\\' in a job's log path as patterns (%u: the user's "
                                          "name), so the jobs would fail as they start, leaving no log: rename or "
                                          "move the experiment's folder (nothing submitted)")
    q_flytomo = shlex.join(flytomo)
    # GPUs asked for: reconstruct on them, whatever device the config names; CPUs per rank asked
    # for: each rank's torch uses them (the config's threads_per_worker would leave them idle)
    run_args = " --device cuda" if opts.gpus_per_node else ""
    if opts.cpus_per_task and opts.executor == "mpi":
        run_args += f" --threads {int(opts.cpus_per_task)}"

    requeues = requeues_at_time_limit(opts)
    signal_line = f"#SBATCH --signal=B:USR1@{REQUEUE_MARGIN_S}" if requeues else ""

    trap = _fill(load_template("requeue-trap.sh"), {
        "margin_s": str(REQUEUE_MARGIN_S), "max_requeues": str(requeues),
        "requeued_times": f"{requeues} time{'s' if requeues > 1 else ''}"}) if requeues else ""

    def run_step(command: str) -> str:
        return _fill(load_template("run-step.sh"), {"command": command, "requeue_trap": trap.rstrip("\n")})

    q_config = shlex.quote(str(config))
    config_line = shlex.quote(f"flytomo-recon: config {q_config}")
    if opts.executor == "mpi":
        srun = ("srun --mpi=" + opts.mpi + " --kill-on-bad-exit=1 "
                + ("--overcommit " if opts.overcommit else "")
                # srun takes --cpus-per-task from sbatch no more (Slurm 22.05): given again
                + (f"--cpus-per-task={int(opts.cpus_per_task)} " if opts.cpus_per_task else ""))
        recon = _fill(load_template("recon-mpi.sbatch"), {
            "job_name": job_name(config, "recon"),
            "nodes": str(opts.nodes),
            "ntasks_per_node": str(opts.ranks_per_node),
            "sbatch_lines": _sbatch_lines(opts, time=opts.time, gpus=True),
            "environment": _environment(opts, flytomo, dask=False),
            "signal_line": signal_line,
            "config_line": config_line,
            "run_step": run_step(f"{srun}{q_flytomo} run {q_config} --executor mpi --no-analysis"
                                 f"{run_args}"),
        })
    else:
        recon = _fill(load_template("recon-dask.sbatch"), {
            "job_name": job_name(config, "recon"),
            "sbatch_lines": _sbatch_lines(opts, time=opts.time, gpus=False),
            "environment": _environment(opts, flytomo, dask=True),
            "signal_line": signal_line,
            "config_line": config_line,
            "run_step": run_step(f"{q_flytomo} run {q_config} --executor dask --no-analysis{run_args}"),
        })
    analysis = None
    if info.analysis_enabled:
        analysis = _fill(load_template("analyze.sbatch"), {
            "job_name": job_name(config, "analyze"),
            "sbatch_lines": _sbatch_lines(opts, time=opts.analysis_time or opts.time, gpus=False, analysis=True),
            "environment": _environment(opts, flytomo, dask=False),
            "flytomo": shlex.join(flytomo_argv(opts, list(info.folders), gpus=False)),
            "analyze_args": shlex.join(info.analyze_args),
            "analyze_line": shlex.quote("flytomo-analyze: flytomo analyze " + shlex.join(info.analyze_args)),
        })
    return JobScripts(config=config, store=store, slurm_dir=slurm_dir,
                      recon_path=slurm_dir / "recon.sbatch", recon_script=recon,
                      analysis_path=slurm_dir / "analyze.sbatch", analysis_script=analysis,
                      binds=tuple(info.folders) if opts.container is not None else (),
                      max_requeues=requeues)


def write(scripts: JobScripts) -> None:
    """Write both scripts to ``DIR/slurm/`` (created), executable by the owner, and make the
    folders a container binds (the store's and the analysis's may not exist yet: Apptainer
    refuses a missing one as the job starts)."""
    for folder in scripts.binds:
        folder.mkdir(parents=True, exist_ok=True)
    scripts.slurm_dir.mkdir(parents=True, exist_ok=True)
    for path, text in ((scripts.recon_path, scripts.recon_script),
                       (scripts.analysis_path, scripts.analysis_script)):
        if text is None:
            path.unlink(missing_ok=True)
        else:
            _write_executable(path, text)


def _write_executable(path: Path, text: str) -> None:
    """``text`` into ``path``, executable by its owner, whole or not at all (temporary, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    tmp.replace(path)


# --------------------------------------------------------------------------- submit
def sbatch_argv(script: Path, workdir: Path, dependency: str | None = None) -> list[str]:
    """The ``sbatch`` command line (an argument list: no shell ever sees it). An analysis job
    (``dependency``: the reconstruction job's id) starts after that job ends, however it ends,
    and reads from ``recon-JOB.exit`` whether it finished by itself (analyze.sbatch)."""
    argv = ["sbatch", "--parsable", f"--chdir={workdir}"]
    if dependency:
        argv += [f"--dependency=afterany:{dependency}", "--kill-on-invalid-dep=yes",
                 f"--export=ALL,FLYTOMO_RECON_JOB={dependency}"]
    return argv + [str(script)]


#: the shell variable ``submit.sh`` keeps the reconstruction job's id in
_RECON_JOB_VAR = "${recon_job}"


def submit_script(scripts: JobScripts) -> str:
    """``submit.sh``: the two ``sbatch`` commands :func:`submit` runs, for a user who edits the
    scripts first (``flytomo submit --write-only``); every path shell-quoted, the analysis job
    given the reconstruction job's id as submit gives it."""
    placeholder = "FLYTOMORECONJOB"

    def line(argv: list[str]) -> str:
        return " ".join(shlex.quote(a) if placeholder not in a else '"' + a.replace(placeholder, _RECON_JOB_VAR) + '"'
                        for a in argv)

    lines = ["#!/usr/bin/env bash",
             "# made by flytomo submit --write-only: submits the reconstruction job, then the analysis job after it,",
             "# as flytomo submit does (edit the .sbatch files beside this first, if you like)",
             "set -euo pipefail",
             f"recon_job=$({line(sbatch_argv(scripts.recon_path, scripts.slurm_dir))})",
             'recon_job="${recon_job%%;*}"  # sbatch --parsable on a multi-cluster site: ID;CLUSTER']
    if scripts.analysis_script is None:
        lines.append('echo "submitted reconstruction job ${recon_job} (analysis.enabled is false)"')
    else:
        lines += [f"analysis_job=$({line(sbatch_argv(scripts.analysis_path, scripts.slurm_dir, placeholder))})",
                  'echo "submitted reconstruction job ${recon_job} and analysis job ${analysis_job%%;*}"']
    return "\n".join(lines) + "\n"


def write_submit_script(scripts: JobScripts) -> Path:
    """Write the scripts (:func:`write`) and ``submit.sh`` beside them; return its path."""
    write(scripts)
    path = scripts.slurm_dir / "submit.sh"
    _write_executable(path, submit_script(scripts))
    return path


def run_sbatch(argv: list[str], cwd: Path) -> str:
    """Run ``sbatch --parsable``; return the job id. Errors name sbatch's complaint."""
    if shutil.which(argv[0]) is None:
        raise FlytomoError(argv[0], "not found on PATH: submit from a Slurm login node "
                                    "(or use --dry-run to only see the scripts)")
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise FlytomoError("sbatch", (proc.stderr or proc.stdout).strip()
                           or f"exit code {proc.returncode}")
    out = proc.stdout.strip().splitlines()
    job = out[-1].split(";")[0].strip() if out else ""
    if not job.isdigit():
        raise FlytomoError("sbatch", f"unexpected output {proc.stdout.strip()!r}")
    return job


def submit(config: str | Path, opts: SlurmOptions, *, check_files: bool = True) -> Submission:
    """Render, write and submit the reconstruction job and the analysis job after it."""
    if shutil.which("sbatch") is None:
        raise FlytomoError("sbatch", "not found on PATH: submit from a Slurm login node "
                                     "(or use --dry-run to only see the scripts)")
    scripts = render(config, opts, check_files=check_files)
    write(scripts)
    recon_argv = sbatch_argv(scripts.recon_path, scripts.slurm_dir)
    recon_job = run_sbatch(recon_argv, scripts.slurm_dir)
    if scripts.analysis_script is None:
        return Submission(scripts, recon_job, None, [recon_argv])
    analysis_argv = sbatch_argv(scripts.analysis_path, scripts.slurm_dir, dependency=recon_job)
    analysis_job = run_sbatch(analysis_argv, scripts.slurm_dir)
    return Submission(scripts, recon_job, analysis_job, [recon_argv, analysis_argv])


def watch_text(sub: Submission) -> str:
    """How to follow a submission: squeue/sacct, the logs, the manifest."""
    jobs = ",".join(j for j in (sub.recon_job, sub.analysis_job) if j)
    if sub.analysis_job:
        head = (f"submitted reconstruction job {sub.recon_job} and analysis job "
                f"{sub.analysis_job} (analyses when {sub.recon_job} has finished: all scans done, some "
                "failed, or some still being written)")
        if sub.scripts.max_requeues:
            head += (f"; {sub.recon_job} requeues itself near its time limit and resumes, up to "
                     f"{sub.scripts.max_requeues} times")
    else:
        head = f"submitted reconstruction job {sub.recon_job} (analysis.enabled is false)"
    manifest = sub.scripts.store / ".flytomo" / "manifest"
    lines = [
        head,
        f"  scripts:  {sub.scripts.slurm_dir}/",
        f"  watch:    squeue -j {jobs}",
        f"            sacct -j {jobs} --format=JobID,JobName,State,Elapsed,ExitCode   (where the cluster keeps "
        f"accounting; else scontrol show job {sub.recon_job})",
        f"  log:      tail -f {shlex.quote(str(sub.recon_log()))}",
    ]
    if sub.analysis_job:
        lines.append(f"            {shlex.quote(str(sub.analysis_log()))}")
    lines += [
        f"  progress: the log's 'reconstruct: N of M units done' lines, one a minute; "
        f"ls {shlex.quote(str(manifest))} | wc -l   (units done)",
        f"  store:    {sub.scripts.store}",
        f"  cancel:   scancel {jobs.replace(',', ' ')}   (submit again to resume)",
    ]
    return "\n".join(lines)
