"""The torch device a user names (``--device``, ``device:`` in a config), checked once here."""
from __future__ import annotations

import torch

from recon.errors import FlytomoError


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
