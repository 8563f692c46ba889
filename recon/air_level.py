"""The air level of a reconstruction made elsewhere: where its zero attenuation lies.

The networks take 0 as air. An 8- or 16-bit export puts zero attenuation wherever its linear map
put it; :func:`zero_level` finds that value from the slices' outer ring (air around a sample inside
the field), for ``flytomo enhance`` and :meth:`recon.weights.LoadedModel.apply` alike.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from recon.io.metadata import assume

#: a reconstruction whose outer ring (air) sits off 0 by more than this fraction of the way from
#: it up to the 95th percentile: an integer export put zero attenuation there (a linear map of
#: FBP's range, negatives included, onto 0…65535 or -32768…32767); a float one gets a warning
ZERO_LEVEL_MIN_FRACTION = 0.05

#: the outer ring is air only where fewer of the slices' pixels lie below its level than this, and
#: its 10th-90th percentile spread is below ZERO_LEVEL_MAX_SPREAD of the way from it to the 95th
#: percentile: air is the least attenuating matter, so only noise in air falls below it, and a ring
#: of air is one level. Whole slices (3 families, FBP and modified MLEM, I0 300 and 3000, 128 px):
#: 15-42 % below, spread 0.01-0.76; crops the sample fills: 39-74 % below, spread 0.67-4.1, each
#: caught by one of the two (a 16-bit crop had its sample's level taken off: -10 dB)
ZERO_LEVEL_MAX_BELOW = 0.45
ZERO_LEVEL_MAX_SPREAD = 0.85


def zero_level(volume, where: str, given: float | None = None, mass: np.ndarray | None = None,
               remedy: str = "--zero-level VALUE") -> float:
    """The value of zero attenuation in a reconstruction (z, y, x), in its own unit.

    ``given`` None ("auto"): the median of the outer ring of the slices' inscribed disk
    (0.46–0.5 of the shorter side from the middle; air around a sample inside the field) over
    up to 16 evenly spaced slices of those holding the sample (:func:`slice_mass`; a stack mostly
    of air slices read as no air: blind probe M) is the air level L; it is off zero where |L| is more than
    :data:`ZERO_LEVEL_MIN_FRACTION` of the way from L up to the slices' 95th percentile. Integer
    values (a reconstruction exported as 8 or 16 bits, signed or not, where 0 is wherever the
    export put it): L, with a note. A ring with more than :data:`ZERO_LEVEL_MAX_BELOW` of the pixels
    below it, or spread wider than :data:`ZERO_LEVEL_MAX_SPREAD`, is no air (a crop the sample
    fills): 0, with a warning for integers. Float values: 0, with a warning where L is off zero (a
    float air level off zero is not guessed: a sample wider than the field fills the ring too).
    A number: that value. ``mass``: :func:`slice_mass` of ``volume`` where already read;
    ``remedy``: how the caller names the value in its words (the command's flag).
    """
    if given is not None:
        return given
    mass = slice_mass(volume) if mass is None else mass  # the slices holding the sample: in air slices half
    # the pixels lie below the air
    held = np.flatnonzero(mass >= 0.5 * mass.max()) if mass.max() > 0 else np.arange(volume.shape[0])
    picks = held[np.unique(np.linspace(0, held.size - 1, min(16, held.size)).round().astype(int))]
    sample = np.stack([np.asarray(volume[int(z)], dtype=np.float64) for z in picks])
    sample = np.where(np.isfinite(sample), sample, np.nan)
    ny, nx = sample.shape[1:]
    r = np.hypot(*np.meshgrid(np.arange(ny) - (ny - 1) / 2, np.arange(nx) - (nx - 1) / 2, indexing="ij"))
    ring = (r > 0.46 * min(ny, nx)) & (r <= 0.5 * min(ny, nx))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN samples: no level
        level, top = float(np.nanmedian(sample[:, ring])), float(np.nanpercentile(sample, 95))
    if not (top > level and abs(level) > ZERO_LEVEL_MIN_FRACTION * (top - level)):
        return 0.0
    where_top = f"the 95th percentile {top:g}"
    below = float(np.mean(sample[np.isfinite(sample)] < level))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p10, p90 = np.nanpercentile(sample[:, ring], [10, 90])
    spread = float(p90 - p10) / (top - level)
    if below > ZERO_LEVEL_MAX_BELOW or spread > ZERO_LEVEL_MAX_SPREAD:  # not air: a crop the sample fills?
        if np.issubdtype(volume.dtype, np.integer):  # (a float one is taken at 0 anyway: nothing to say)
            why = (f"{below:.0%} of the pixels lie below it" if below > ZERO_LEVEL_MAX_BELOW
                   else f"its values spread over {spread:.0%} of the way to that percentile")
            warnings.warn(f"{where}: the outer ring of the slices sits at {level:g} ({where_top}) but {why}, so it "
                          "is not air (a crop the sample fills?): no zero level is taken off; if 0 is not zero "
                          f"attenuation, {remedy} names the value that is", stacklevel=2)
        return 0.0
    if not np.issubdtype(volume.dtype, np.integer):
        warnings.warn(f"{where}: the outer ring of the slices sits at {level:g} ({where_top}), not at 0: the "
                      f"network takes 0 as air; if that ring is air, {remedy.replace('VALUE', f'{level:g}')} takes "
                      "it off and puts it back", stacklevel=2)
        return 0.0
    assume(Path(where), f"integer values whose outer ring sits at {level:g} ({where_top}): taken as zero "
                        f"attenuation, subtracted before the network and added back after ({remedy} to set it, "
                        "0 for none)")
    return level


#: slices of a volume :func:`slice_mass` reads at most (evenly spaced), pixels per slice
MASS_SLICES = 64
MASS_PIXELS = 1 << 16


def slice_mass(volume) -> np.ndarray:
    """(n_slices,) how much sample each slice of ``volume`` (z, y, x) holds: the mean of its
    values above their 5th percentile (an offset of the air does not count), over
    :data:`MASS_PIXELS` of them, read in up to :data:`MASS_SLICES` slices and interpolated between
    them (the volume's counterpart of :func:`recon.io.preprocess.row_mass`)."""
    n = int(volume.shape[0])
    at = np.unique(np.linspace(0, n - 1, min(n, MASS_SLICES)).round().astype(int))
    step = max(1, int(np.sqrt(int(volume.shape[1]) * int(volume.shape[2]) / MASS_PIXELS)))
    mass = []
    for z in at:
        x = np.asarray(volume[int(z), ::step, ::step], dtype=np.float64)
        x = x[np.isfinite(x)]
        mass.append(float(np.mean(x) - np.percentile(x, 5)) if x.size else 0.0)
    return np.interp(np.arange(n), at, mass)
