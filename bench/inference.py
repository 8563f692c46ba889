"""Inference cost of the correction networks: parameters, multiply-adds per pixel, slices/s.

For each model (the shipped ones and, where ../shared has it, the seed authors' network):
parameters, multiply-adds per output pixel (counted over the convolutions the forward pass
really runs), and the time to correct a batch of 512² slices on this machine's device
(best of ``--repeat``, after one warm-up), as slices per second. The network alone: the
first-stage reconstruction is timed in bench/operators.py.

    .venv/bin/python bench/inference.py [--size 512] [--slices 4] [--device cpu|cuda]
        [--batch 8] [--amp] [--self-ensemble] [--method [--angles 120]]
        [--model PATH ...] [--json bench/results/inference.json]

``--method`` also times what ``flytomo recon`` runs per slice, from line integrals (z, angles,
columns) to the corrected slice: FBP, modified MLEM (the default iterations), the ``rrdb``
method with one network (``blend=none``) and the ``rrdb`` method as shipped (both first stages,
both networks and their mean), batched as the engine does.

``--amp`` also times each network under autocast (float16 on CUDA, bfloat16 on the CPU) in the
same run, and records the speed-up over float32 and the largest difference from the float32
output, relative to that output's range. ``--model PATH`` adds a weights file (repeatable).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from recon.errors import FlytomoError
from recon.geometry import ScanGeometry
from recon.methods import make_reconstructor
from recon.weights import (DEFAULT_BLEND, INPUT_KINDS, channel_kinds, default_weights_path, load_model,
                           seed_checkpoint_path)


def macs_per_pixel(model: nn.Module, channels: int = 1) -> int:
    """Multiply-adds per output pixel of a same-size conv net of ``channels`` input channels,
    over the convs its forward runs."""
    total = [0]

    def hook(m: nn.Conv2d, inp, out) -> None:
        kh, kw = m.kernel_size
        total[0] += m.in_channels // m.groups * m.out_channels * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, channels, 8, 8, dtype=next(model.parameters()).dtype,
                              device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return total[0]


def method_rows(size: int, n_angles: int, slices: int, repeat: int, device: str, batch: int) -> list[dict]:
    """Seconds per slice of whole methods on random line integrals (slices, n_angles, size)."""
    g = ScanGeometry.create(np.linspace(0.0, 180.0, n_angles, endpoint=False), size)
    sino = np.random.default_rng(1).random((slices, n_angles, size), dtype=np.float32) * 0.01
    cases = [("fbp", "fbp", {}), ("modified MLEM", "mlem-flyscan", {}),
             ("rrdb, one network (blend=none)", "rrdb", {"blend": "none"}),
             ("rrdb as shipped (default options)", "rrdb", {})]
    rows = []
    for label, method, opts in cases:
        rec = make_reconstructor(g, method, device, batch=batch, **opts)
        rec(sino[:1])  # warm-up
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            rec(sino)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
        per = best / slices
        networks = 0 if rec.model is None else 1 + (rec.blend is not None)
        rows.append({"method": label, "networks": networks, "s_per_slice": per, "slices_per_s": 1 / per})
        print(f"{label:>36} {networks:>8} {per:>8.2f} {1 / per:>9.2f}")
    return rows


def _time_apply(loaded, x: np.ndarray, args: argparse.Namespace, *, amp: bool) -> tuple[np.ndarray, float]:
    """The network on slices ``x``: (output, best seconds per slice over ``--repeat``, after a warm-up)."""
    opts = {"batch": args.batch, "amp": amp, "self_ensemble": args.self_ensemble}
    loaded.apply(x[:args.batch], **opts)  # warm-up
    best, out = float("inf"), None
    for _ in range(args.repeat):
        t = time.perf_counter()
        out = loaded.apply(x, **opts)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return out, best / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8, help="slices per forward pass")
    ap.add_argument("--amp", action="store_true", help="also time autocast (float16 on CUDA, bfloat16 on the CPU)")
    ap.add_argument("--model", action="append", default=[], metavar="PATH", help="another weights file to time")
    ap.add_argument("--self-ensemble", action="store_true", help="each model averaged over the 8 rotations/flips")
    ap.add_argument("--method", action="store_true", help="also time whole methods per slice (first stage + networks)")
    ap.add_argument("--angles", type=int, default=120, help="projections per scan for --method")
    ap.add_argument("--json")
    args = ap.parse_args()
    specs = [(f"flytomo rrdb-{k}", str(default_weights_path(k))) for k in INPUT_KINDS
             if default_weights_path(k).is_file()]
    if DEFAULT_BLEND.is_file():
        specs.append((f"flytomo {DEFAULT_BLEND.stem}", str(DEFAULT_BLEND)))
    if seed_checkpoint_path().is_file():
        specs.append(("seed authors' RRDB", f"seed:{seed_checkpoint_path()}"))
    specs += [(Path(m).parent.name or m, m) for m in args.model]
    rng = np.random.default_rng(0)
    rows = []
    print(f"{'model':>30} {'params':>9} {'MAC/px':>9} {'GMAC/slice':>11} {'s/slice':>8} {'slices/s':>9}")
    for label, spec in specs:
        try:
            loaded = load_model(spec, device=args.device)
        except FlytomoError as err:
            print(f"{label}: skipped ({err})")
            continue
        channels = len(channel_kinds(loaded.input_kind))  # a two-channel model takes (z, C, y, x)
        shape = (args.slices, args.size, args.size) if channels == 1 else (args.slices, channels, args.size, args.size)
        x = rng.random(shape, dtype=np.float32)
        macs = macs_per_pixel(loaded.model, channels)
        params = sum(p.numel() for p in loaded.model.parameters())
        exact, per = _time_apply(loaded, x, args, amp=False)
        row = {"model": label, "input_kind": loaded.input_kind, "parameters": params,
               "macs_per_pixel": macs, "gmac_per_slice": macs * args.size ** 2 / 1e9,
               "s_per_slice": per, "slices_per_s": 1 / per, "self_ensemble": args.self_ensemble}
        line = f"{label:>30} {params:>9,} {macs:>9,} {macs * args.size ** 2 / 1e9:>11.1f} {per:>8.2f} {1 / per:>9.2f}"
        if args.amp:  # the same network under autocast, timed in the same run, and what it costs in accuracy
            out, per_amp = _time_apply(loaded, x, args, amp=True)
            row.update(amp_s_per_slice=per_amp, amp_speedup=per / per_amp,
                       amp_max_rel_diff=float(np.abs(out - exact).max() / np.ptp(exact)))
            line += f"   amp {per_amp:.2f} s/slice ({per / per_amp:.2f}x, max diff {row['amp_max_rel_diff']:.1e})"
        rows.append(row)
        print(line)
    methods = []
    if args.method:
        print(f"\n{'method (' + str(args.angles) + ' projections)':>36} {'networks':>8} {'s/slice':>8} {'slices/s':>9}")
        methods = method_rows(args.size, args.angles, args.slices, args.repeat, args.device, args.batch)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": vars(args), "torch_threads": torch.get_num_threads(),
                       "machine": platform.processor() or platform.machine(), "results": rows,
                       "methods": methods}, f, indent=1)


if __name__ == "__main__":
    main()
