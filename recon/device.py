"""The torch device a user names (``--device``, ``device:`` in a config), checked once here."""
from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch

from recon.errors import FlytomoError

#: flags of /proc/cpuinfo that mean bfloat16 arithmetic in hardware
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX-512-BF16 or AMX); True where it cannot
    be told (no /proc/cpuinfo). Elsewhere CPU autocast to bfloat16 is emulated: 4-6x slower than
    float32 (blind probe AC, AMD EPYC with AVX2: 37.7 s against 5.8 s per 400² slice)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return True
    return any(f in flags for f in BF16_FLAGS)


def amp_on(device: str | torch.device, wanted: bool, what: str = "--amp") -> bool:
    """Whether mixed precision runs on ``device`` where ``wanted``: not on a CPU without bfloat16
    arithmetic (:func:`cpu_bf16_or_float32` warns), so that a record says what ran."""
    if wanted and torch.device(device).type == "cpu":
        return cpu_bf16_or_float32(True, what)
    return bool(wanted)


def cpu_bf16_or_float32(wanted: bool, what: str) -> bool:
    """``wanted`` where this CPU has bfloat16 in hardware; else False, with a warning naming
    ``what`` (the flag or config key that asked for it)."""
    if wanted and not cpu_has_fast_bf16():
        warnings.warn(f"{what}: this CPU has no bfloat16 arithmetic ({' or '.join(BF16_FLAGS)}), where "
                      "bfloat16 runs 4-6x slower than float32: float32 is used", UserWarning, stacklevel=3)
        return False
    return wanted


def torch_device(name: str | torch.device, where: str | None = None) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` (or a torch.device) → torch.device, or a one-line
    FlytomoError (naming ``where``, e.g. the flag) for a name torch does not know, a CUDA
    device on a machine whose torch sees none, or a GPU index it does not have."""
    try:
        d = torch.device(name)
    except (RuntimeError, TypeError):
        raise FlytomoError(where, f"unknown device {str(name)!r}; use cpu, cuda or cuda:N") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise FlytomoError(where, f"device {name} asked for, but torch sees no CUDA GPU here; use --device cpu")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise FlytomoError(where, f"device {name} asked for, but torch sees {torch.cuda.device_count()} CUDA "
                                      "GPU(s) here")
    elif d.type == "mps":  # an Apple GPU, where this torch build has it
        if not torch.backends.mps.is_available():
            raise FlytomoError(where, f"device {name} asked for, but torch sees no Apple GPU here; use --device cpu")
    elif d.type != "cpu":
        raise FlytomoError(where, f"device {name} is not supported; use cpu, cuda or cuda:N")
    return d
