"""``flytomo train``: train a correction network from a YAML config (see jobs/train.yaml)."""
from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from recon.errors import FlytomoError
    from recon.train import TrainConfig, load_config, train

    cfg, run_dir = load_config(args.config, device=args.device, threads=args.threads,
                               workers=args.workers, steps=args.steps)
    if args.run_dir:
        run_dir = args.run_dir.resolve()
    try:
        result = train(cfg, run_dir, progress=not (args.quiet or args.no_progress), fresh=args.fresh,
                       time_limit_s=args.time_limit)
    except FlytomoError as err:  # a config key found bad later (e.g. data.families): name the file
        if err.where and err.where.split(".")[0] in TrainConfig.model_fields:
            raise FlytomoError(args.config, f"key '{err.where}': {err.problem}") from None
        raise
    if result.status == "stopped":
        print(f"flytomo train: stopped at step {result.step}"
              + (f" ({result.note})" if result.note else f"; checkpoint in {run_dir}")
              + "; run the same command again to resume")
        return 3
    v = result.validation
    print(f"flytomo train: {result.step} steps in {result.wall_time_s:.0f} s; validation PSNR "
          f"{v.get('val_psnr', float('nan')):.2f} dB (input {v.get('input_psnr', float('nan')):.2f}), "
          f"SSIM {v.get('val_ssim', float('nan')):.3f} (input {v.get('input_ssim', float('nan')):.3f})")
    print(f"weights: {result.weights}")
    return 0


def register(subparsers) -> None:
    from pathlib import Path

    p = subparsers.add_parser(
        "train", help="train an RRDB correction network on simulated fly-scans",
        description="Train (or resume) an RRDB correction network. Pairs are simulated once "
                    "into the config's data_dir (default RUN_DIR/data; runs naming one folder "
                    "share them); checkpoints go to RUN_DIR/checkpoint.pt and a rerun resumes; the result is RUN_DIR/NAME.safetensors with its model card "
                    "NAME.json. Exit 3 when stopped early (time limit, SIGTERM) with a "
                    "checkpoint to resume from.")
    p.add_argument("--config", type=Path, required=True, help="training config (YAML)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="run folder (default: the config's run_dir)")
    p.add_argument("--steps", type=int, default=None, help="override training.steps")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (override)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (override)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes simulating training pairs in parallel (override)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="checkpoint and stop after this much wall time from the start, the "
                        "simulation of training pairs included (e.g. before a Slurm time limit); "
                        "run again to resume")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (as --quiet; run's name for it)")
    p.set_defaults(func=lambda args: _run(args))
