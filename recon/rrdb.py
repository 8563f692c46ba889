"""The correction network: RRDBNet (residual-in-residual dense blocks), and only the network.

Same-size image-to-image network of the ESRGAN family without upsampling and without batch
norm, as used by the seed paper to correct fly-scan FBP reconstructions. Module names follow
the seed authors' released state dict (``conv_first``, ``RRDB_trunk.N.RDB1.conv1``, …,
``trunk_conv``, ``HRconv``, ``conv_last``) so that ``pre_trained_model.pth`` loads strictly.

Layout, for an input ``x`` of shape (B, in_nc, H, W)::

    fea   = conv_first(x)                                  # in_nc → nf
    trunk = trunk_conv(RRDB_trunk(fea))                    # nb RRDB blocks, nf → nf
    out   = conv_last(lrelu(HRconv(fea + trunk)))          # nf → out_nc
    out   = x + out            only when global_residual   (flytomo's own models)

RRDB block: ``RDB3(RDB2(RDB1(x))) * 0.2 + x``. Dense block with ``dense_convs`` = d
convolutions: conv k sees the concatenation (x, x1, …, x_{k-1}); conv1…conv_{d-1} give gc
channels, conv_d gives nf; output ``x_d * dense_scale + x``. Two variants:

- d = 3 (the seed's released layout): every conv followed by LeakyReLU(0.2), the last too;
  dense_scale 0.4.
- d = 5 (ESRGAN): no activation after the last conv; dense_scale 0.2.

Model construction from a config goes through :data:`ARCHITECTURES` / :func:`build_model`.
Weights and their model card live in :mod:`recon.weights`; applying a model to a volume is
:func:`recon.infer.apply_model`.
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from recon.errors import FlytomoError

__all__ = ["ARCHITECTURES", "SEED_CONFIG", "RRDBNet", "build_model"]

#: the seed authors' released layout (pre_trained_model.pth)
SEED_CONFIG = {
    "architecture": "rrdb", "in_nc": 1, "out_nc": 1, "nf": 16, "nb": 4, "gc": 32,
    "dense_convs": 3, "global_residual": False, "unused_first_convs": True,
}


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1, bias=True)


class DenseBlock(nn.Module):
    """Residual dense block: ``dense_convs`` 3×3 convs with dense concatenation.

    (B, nf, H, W) → (B, nf, H, W).
    """

    def __init__(self, nf: int, gc: int, n_convs: int, scale: float, act_last: bool) -> None:
        super().__init__()
        self.n_convs = n_convs
        self.scale = float(scale)
        self.act_last = bool(act_last)
        for k in range(1, n_convs + 1):
            cout = nf if k == n_convs else gc
            setattr(self, f"conv{k}", _conv(nf + (k - 1) * gc, cout))
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        out = x
        for k in range(1, self.n_convs + 1):
            out = getattr(self, f"conv{k}")(torch.cat(feats, 1) if k > 1 else x)
            if k < self.n_convs or self.act_last:
                out = self.lrelu(out)
            feats.append(out)
        return out * self.scale + x


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks, output ``out * 0.2 + x``."""

    def __init__(self, nf: int, gc: int, n_convs: int, dense_scale: float, act_last: bool) -> None:
        super().__init__()
        self.RDB1 = DenseBlock(nf, gc, n_convs, dense_scale, act_last)
        self.RDB2 = DenseBlock(nf, gc, n_convs, dense_scale, act_last)
        self.RDB3 = DenseBlock(nf, gc, n_convs, dense_scale, act_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """Same-size RRDB network: (B, in_nc, H, W) float → (B, out_nc, H, W), any H, W.

    Parameters
    ----------
    in_nc, out_nc : input / output channels (1 for attenuation images).
    nf : feature channels of the trunk.
    nb : number of RRDB blocks.
    gc : growth channels inside a dense block.
    dense_convs : convolutions per dense block, ≥ 2 (3: the seed's layout; 5: ESRGAN).
    dense_scale : residual scaling of a dense block; default 0.4 for 3 convs (seed), else 0.2.
    dense_last_act : LeakyReLU after a dense block's last conv; default True for 3 convs
        (seed), else False (ESRGAN).
    global_residual : output = input + network(input) — the input's first ``out_nc``
        channels (needs out_nc ≤ in_nc; a two-channel model adds its primary channel). Off
        in the seed's layout; flytomo's own models use it, so a zero last conv is the identity.
    unused_first_convs : also create ``conv_first_1`` / ``conv_first_2`` (in_nc → nf/2),
        never used by ``forward``; present in the seed's state dict so it loads strictly.
    init_scale : Kaiming-normal initialisation scaled by this (ESRGAN uses 0.1).
    """

    def __init__(
        self,
        in_nc: int = 1,
        out_nc: int = 1,
        nf: int = 32,
        nb: int = 4,
        gc: int = 32,
        dense_convs: int = 3,
        dense_scale: float | None = None,
        dense_last_act: bool | None = None,
        global_residual: bool = True,
        unused_first_convs: bool = False,
        init_scale: float = 0.1,
    ) -> None:
        super().__init__()
        if min(in_nc, out_nc, nf, gc) < 1 or nb < 0 or dense_convs < 2:
            raise FlytomoError("model", f"bad RRDBNet sizes in_nc={in_nc} out_nc={out_nc} nf={nf} "
                               f"nb={nb} gc={gc} dense_convs={dense_convs}")
        if global_residual and out_nc > in_nc:
            raise FlytomoError("model.global_residual", "needs out_nc ≤ in_nc")
        if dense_scale is None:
            dense_scale = 0.4 if dense_convs == 3 else 0.2
        if dense_last_act is None:
            dense_last_act = dense_convs == 3
        self.config = {
            "architecture": "rrdb", "in_nc": int(in_nc), "out_nc": int(out_nc), "nf": int(nf),
            "nb": int(nb), "gc": int(gc), "dense_convs": int(dense_convs),
            "dense_scale": float(dense_scale), "dense_last_act": bool(dense_last_act),
            "global_residual": bool(global_residual),
            "unused_first_convs": bool(unused_first_convs), "init_scale": float(init_scale),
        }
        self.global_residual = bool(global_residual)
        if unused_first_convs:
            self.conv_first_1 = _conv(in_nc, nf // 2)
            self.conv_first_2 = _conv(in_nc, nf // 2)
        self.conv_first = _conv(in_nc, nf)
        self.RRDB_trunk = nn.Sequential(
            *[RRDB(nf, gc, dense_convs, dense_scale, dense_last_act) for _ in range(nb)])
        self.trunk_conv = _conv(nf, nf)
        self.HRconv = _conv(nf, nf)
        self.conv_last = _conv(nf, out_nc)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        self._init_weights(init_scale)

    def _init_weights(self, scale: float) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                m.weight.data.mul_(scale)
                nn.init.zeros_(m.bias)

    @property
    def receptive_radius(self) -> int:
        """Pixels of context each output pixel sees on each side (3×3 convs on the longest
        path: conv_first, nb·3·dense_convs, trunk_conv, HRconv, conv_last). Tiles need at
        least this much overlap to reproduce the whole-image result exactly."""
        c = self.config
        return 1 + c["nb"] * 3 * c["dense_convs"] + 3

    def load_shallower(self, state: dict[str, torch.Tensor], nb: int) -> None:
        """Load the weights of the same network with ``nb`` < this one's RRDB blocks so that it
        computes exactly what they do (up to rounding): blocks ``nb…`` keep their own random
        weights except each dense block's last convolution, set to zero (a dense block is then
        the identity, so an added RRDB multiplies the trunk by 1.2), and ``trunk_conv``'s
        weights are divided by 1.2 per added block. Training then gives the new blocks a use
        (net2net-style growth of a trained network)."""
        added = self.config["nb"] - int(nb)
        if added < 1:
            raise FlytomoError("model.nb", f"{nb} blocks is not fewer than this network's {self.config['nb']}")
        own = self.state_dict()
        grown = {k: v.clone() for k, v in own.items()}
        for key, value in state.items():
            if key not in own or own[key].shape != value.shape:
                raise FlytomoError("init", f"weight {key} does not fit this network")
            grown[key] = value.clone()
        last = self.config["dense_convs"]
        for b in range(int(nb), self.config["nb"]):
            for r in (1, 2, 3):
                for part in ("weight", "bias"):
                    grown[f"RRDB_trunk.{b}.RDB{r}.conv{last}.{part}"].zero_()
        grown["trunk_conv.weight"] /= 1.2 ** added
        self.load_state_dict(grown)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_nc, H, W) → (B, out_nc, H, W), same dtype and device."""
        fea = self.conv_first(x)
        trunk = self.trunk_conv(self.RRDB_trunk(fea))
        fea = fea + trunk
        out = self.conv_last(self.lrelu(self.HRconv(fea)))
        return x[:, :out.shape[1]] + out if self.global_residual else out


#: architecture name (the ``architecture`` key of a model config) → class
ARCHITECTURES: dict[str, type[nn.Module]] = {"rrdb": RRDBNet}


def build_model(config: dict) -> nn.Module:
    """Build a network from a config such as ``{"architecture": "rrdb", "nf": 32, "nb": 4}``.

    The config's other keys are the class's keyword arguments; unknown keys raise
    :class:`FlytomoError` naming the key. The built module keeps the resolved config (all
    defaults filled in) as ``model.config``, which is what a model card stores.
    """
    cfg = dict(config)
    name = cfg.pop("architecture", "rrdb")
    if name not in ARCHITECTURES:
        raise FlytomoError("model.architecture",
                           f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    cls = ARCHITECTURES[name]
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    for key in cfg:
        if key not in allowed:
            raise FlytomoError(f"model.{key}", f"unknown option for architecture {name!r}; "
                               f"known: {', '.join(sorted(allowed))}")
    for key in ("nf", "nb", "gc", "dense_convs", "in_nc", "out_nc"):
        value = cfg.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise FlytomoError(f"model.{key}", f"must be a whole number of at least 1, not {value!r}")
    return cls(**cfg)
