"""``flytomo submit CONFIG``: run a whole experiment on a Slurm cluster.

Checks the config, its scans and its log as ``flytomo check`` does, renders a
reconstruction job and an analysis job that depends on it into ``DIR/slurm/`` next to the
config, submits both with ``sbatch --parsable`` and prints the job ids and
how to watch them. ``--dry-run`` prints the scripts and the sbatch commands instead;
``--write-only`` writes the scripts and a ``submit.sh`` that submits them, to be edited first.
See docs/facility.md.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from hpc import slurm
from hpc.commands import first_line


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "submit", help="submit an experiment to Slurm (reconstruction, then analysis)",
        description=first_line(__doc__),
        epilog="Every path reaches the job scripts shell-quoted; logs go to DIR/slurm/.")
    p.add_argument("config", type=Path, help="experiment config (YAML)")
    g = p.add_argument_group("resources")
    g.add_argument("--nodes", type=int, default=1, help="nodes for the reconstruction (default 1)")
    g.add_argument("--gpus-per-node", type=int, default=0, metavar="G",
                   help="GPUs per node (default 0: CPU only)")
    g.add_argument("--ntasks-per-node", type=int, default=None, metavar="T",
                   help="MPI ranks per node (default: one per GPU, else 1)")
    g.add_argument("--cpus-per-task", type=int, default=None, metavar="C",
                   help="CPUs per rank, and each rank's torch threads (default: the config's threads_per_worker "
                        "where above 1, else Slurm's)")
    g.add_argument("--mem", default=None, metavar="SIZE",
                   help="memory per node of both jobs, e.g. 64G (default: the partition's; 0: all)")
    g.add_argument("--partition", "-p", default=None, metavar="P", help="Slurm partition (default: the site's)")
    g.add_argument("--time", "-t", default=None, metavar="T",
                   help="time limit, e.g. 02:00:00 (default: the partition's)")
    g.add_argument("--analysis-time", default=None, metavar="T",
                   help="time limit of the analysis job (default: --time)")
    g.add_argument("--analysis-partition", default=None, metavar="P",
                   help="partition of the analysis job, which needs no GPU (default: --partition)")
    g.add_argument("--account", "-A", default=None, metavar="A", help="Slurm account to charge (default: yours)")
    g.add_argument("--max-requeues", type=int, default=slurm.SlurmOptions.max_requeues, metavar="N",
                   help="times the reconstruction job requeues itself when its time limit is near; "
                        "each start resumes from the store (default %(default)s; 0: never)")
    g.add_argument("--overcommit", action="store_true",
                   help="allow more ranks than CPUs (srun/sbatch --overcommit)")
    c = p.add_mutually_exclusive_group()
    c.add_argument("--container", type=Path, default=None, metavar="IMAGE.sif",
                   help="run flytomo inside this Apptainer image (apptainer exec [--nv])")
    c.add_argument("--no-container", action="store_true",
                   help="run this installation's flytomo (the default)")
    p.add_argument("--bind", action="append", default=[], metavar="SRC[:DST]",
                   help="extra folder to bind into the container (repeatable, or a comma-separated list)")
    e = p.add_argument_group("engine")
    e.add_argument("--executor", choices=slurm.EXECUTORS, default="mpi",
                   help="mpi: srun ranks (default); dask: SLURMCluster worker jobs")
    e.add_argument("--mpi", default="pmi2", choices=slurm.MPI_TYPES,
                   help="srun --mpi type (default pmi2, what MPICH speaks)")
    e.add_argument("--dask-interface", default=None, metavar="IFACE",
                   help="Dask network interface where executor.dask.jobqueue sets none "
                        "(e.g. ib0; lo on one test machine)")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--dry-run", action="store_true",
                   help="print the scripts and sbatch commands; write and submit nothing")
    w.add_argument("--write-only", action="store_true",
                   help="write the scripts and DIR/slurm/submit.sh, which submits them as this command "
                        "would (to edit them first); submit nothing")
    p.add_argument("--no-file-checks", action="store_true",
                   help="check the config only, without opening every scan and the log first "
                        "(as `flytomo check` does by default)")
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> slurm.SlurmOptions:
    """The :class:`hpc.slurm.SlurmOptions` the command line asks for."""
    return slurm.SlurmOptions(
        nodes=args.nodes, ntasks_per_node=args.ntasks_per_node,
        gpus_per_node=args.gpus_per_node, cpus_per_task=args.cpus_per_task, mem=args.mem,
        partition=args.partition, time=args.time, account=args.account,
        analysis_time=args.analysis_time, analysis_partition=args.analysis_partition,
        container=None if args.no_container else args.container,
        binds=tuple(args.bind), executor=args.executor, mpi=args.mpi,
        overcommit=args.overcommit, dask_interface=args.dask_interface, max_requeues=args.max_requeues)


def run(args: argparse.Namespace) -> int:
    opts = options_from_args(args)
    if args.dry_run:
        scripts = slurm.render(args.config, opts, check_files=not args.no_file_checks)
        recon = slurm.sbatch_argv(scripts.recon_path, scripts.slurm_dir)
        print(f"# --- {scripts.recon_path} ---")
        print(scripts.recon_script)
        if scripts.analysis_script is not None:
            print(f"# --- {scripts.analysis_path} ---")
            print(scripts.analysis_script)
        print("# --- would run (nothing written, nothing submitted) ---")
        print(shlex.join(recon))
        if scripts.analysis_script is not None:
            print(shlex.join(slurm.sbatch_argv(scripts.analysis_path, scripts.slurm_dir,
                                               "RECON_JOB_ID")))
        return 0
    if args.write_only:
        scripts = slurm.render(args.config, opts, check_files=not args.no_file_checks)
        path = slurm.write_submit_script(scripts)
        written = [scripts.recon_path] + ([scripts.analysis_path] if scripts.analysis_script is not None else [])
        print(f"wrote {', '.join(str(p) for p in written)} and {path}; nothing submitted: edit the scripts if you "
              f"like, then submit both with: bash {shlex.quote(str(path))}")
        return 0
    sub = slurm.submit(args.config, opts, check_files=not args.no_file_checks)
    print(slurm.watch_text(sub))
    return 0
