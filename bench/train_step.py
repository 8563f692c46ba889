"""Cost of one training step on this CPU: float32 against bfloat16 autocast (``training.cpu_bf16``).

For the shipped network's shape (nf 32, gc 16, 3 blocks) and one four times its parameters
(nf 64, gc 32), the median time of a training step as ``flytomo train`` takes it (batch 2 of
128-px patches: forward, L1 loss in float32, backward, Adam) in three ways: float32 with
NCHW tensors, float32 channels-last, and bfloat16 autocast channels-last (oneDNN's AMX /
AVX-512-BF16 kernels where the CPU has them; plain float32 speed elsewhere).

    .venv/bin/python bench/train_step.py [--json bench/results/train_step.json]
"""
from __future__ import annotations

import platform
import statistics
import time

import torch

from benchio import run_and_save
from recon.rrdb import build_model

SHAPES = {"shipped (nf 32, gc 16)": {"nf": 32, "nb": 3, "gc": 16},
          "4x (nf 64, gc 32)": {"nf": 64, "nb": 3, "gc": 32}}
MODES = {"fp32 NCHW": (False, False), "fp32 channels-last": (False, True), "bf16 channels-last": (True, True)}


def step_seconds(shape: dict, bf16: bool, channels_last: bool, steps: int = 10, batch: int = 2,
                 patch: int = 128) -> float:
    """Median seconds of ``steps`` training steps after one warm-up."""
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model({"architecture": "rrdb", **shape}).to(memory_format=layout)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.rand(batch, 1, patch, patch).contiguous(memory_format=layout)
    y = torch.rand(batch, 1, patch, patch)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = (out.float() - y).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def run() -> dict:
    rows = []
    print("| network | parameters | " + " | ".join(f"{m} s/step" for m in MODES) + " | bf16 speed-up |")
    print("|---|---|" + "---|" * (len(MODES) + 1))
    for name, shape in SHAPES.items():
        params = sum(p.numel() for p in build_model({"architecture": "rrdb", **shape}).parameters())
        t = {m: step_seconds(shape, *flags) for m, flags in MODES.items()}
        speedup = t["fp32 NCHW"] / t["bf16 channels-last"]
        rows.append({"network": name, "config": shape, "parameters": params, "seconds_per_step": t,
                     "bf16_speedup_over_fp32_nchw": speedup})
        print(f"| {name} | {params:,} | " + " | ".join(f"{v:.3f}" for v in t.values()) + f" | {speedup:.2f}x |",
              flush=True)
    return {"rows": rows, "batch": 2, "patch": 128, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}


if __name__ == "__main__":
    raise SystemExit(run_and_save(__doc__, run))
