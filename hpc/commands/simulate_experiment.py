"""``flytomo simulate-experiment DIR``: a synthetic heating experiment with known crack fractions.

Writes DIR/raw/scan_NNNN.h5 (FXI), DIR/raw/temperature.csv, DIR/truth/ (crack_fraction.csv,
volumes.npz, experiment.json) and DIR/experiment.yaml; deterministic from --seed. See
hpc/experiment_sim.py for the temperature program and the crack kinetics.
"""
from __future__ import annotations

import argparse

from hpc.commands import first_line


def run(args: argparse.Namespace) -> int:
    from hpc.experiment_sim import SimSettings, simulate_experiment

    s = SimSettings(size=args.size, n_scans=args.scans, seed=args.seed, i0=args.i0,
                    n_angles=args.angles, method=args.method)
    sim = simulate_experiment(args.dir, s, progress=not args.quiet, overwrite=args.overwrite)
    print(f"simulated {len(sim.scans)} scans of {s.size}³ px in {sim.seconds:.1f} s → {sim.folder}")
    print(f"  crack fraction {100 * sim.crack_fraction.min():.2f}% .. {100 * sim.crack_fraction.max():.2f}% "
          f"(truth: {sim.truth_table})")
    print(f"  config {sim.config}\n  next: flytomo run {sim.config}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("simulate-experiment", help="write a synthetic in-situ heating experiment",
                              description=first_line(__doc__))
    p.add_argument("dir", help="experiment folder to create")
    p.add_argument("--size", type=int, default=64, help="voxels per side (default 64)")
    p.add_argument("--scans", type=int, default=24, help="number of fly-scans (default 24)")
    p.add_argument("--seed", type=int, default=0, help="seed of the particle, its cracks and the noise")
    p.add_argument("--i0", type=float, default=5000.0, help="open-beam counts per pixel per frame")
    p.add_argument("--angles", type=int, default=None, help="projections per scan (default 1.5 × size, at most 180° / blur)")
    p.add_argument("--method", default="mlem-flyscan", choices=("fbp", "mlem", "mlem-flyscan", "rrdb"),
                   help="method written into experiment.yaml")
    p.add_argument("--overwrite", action="store_true", help="write into a folder that holds scans already")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
