"""Domain randomisation of training pairs (beyond the paper): what differs between scanners,
drawn afresh for every pair so that a model does not learn one acquisition.

Per pair, on top of the paper's protocol (:func:`csrdmri.dmri.pairs.sample_batch`):

* **b-value**: the S/S0 patch ``r`` measured at b = 1000 s/mm² becomes ``r ** (b / 1000)``
  (mono-exponential decay per voxel), b drawn in ``bvalue`` — HR target and LR input alike.
* **degradation**: k-space truncation (Gibbs ringing included) instead of tricubic
  downsampling with probability ``kspace``; then a **slice profile** thicker than the spacing:
  a Gaussian blur along one random axis of the LR patch, sigma drawn in ``slice_sigma`` (LR
  voxels).
* **SNR**: with probability ``noise``, Rician noise added to the HR patch *before* it is
  degraded — a noisier acquisition of the same anatomy, target and input alike, as in a real
  scan (where the LR input is made from the noisy HR). Sigma = 1 / SNR in S/S0 units (the b0 is
  1 there), SNR drawn in ``snr``; it adds to the data's own noise (the phantom's b0 SNR is 19:
  together 8–18 over the default range).
* **T1w contrast**: the normalised T1w patch raised to a power drawn in ``t1_gamma`` and
  multiplied by a smooth linear bias field of relative amplitude up to ``t1_bias``.
* **subject motion**: with probability ``motion``, the DWI volume is shifted against the b0
  that normalises it (and against the T1w) by up to ``shift`` voxels per axis, as when the head
  moves between volumes of an uncorrected series: S/S0 becomes ``r(x + d) · S0(x + d) / S0(x)``,
  with the misregistration edges that brings.

Every component can be turned off (a probability of 0, or a range of one value: ``bvalue``
(1000, 1000), ``slice_sigma`` (0, 0), ``t1_gamma`` (1, 1), ``t1_bias`` 0).

Voxel size and anisotropy of the scan itself are covered by the scale range of training, the
slice profile and, at the level of the generator, by mixing phantom cohorts of other voxel
sizes and SNRs (``csrdmri phantom --voxel-size --snr``) in one multi-source run. The ranges
below are the defaults; :class:`Randomisation` documents each.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

from csrdmri.core.errors import InputError
from csrdmri.core.patches import degrade

#: Voxels read around a patch for motion: the largest ``shift`` plus one for interpolation.
MOTION_MARGIN = 4


@dataclass(frozen=True)
class Randomisation:
    """Ranges of the randomised acquisition (each drawn uniformly per pair)."""

    bvalue: tuple[float, float] = (700.0, 3000.0)  # [s/mm²]
    noise: float = 0.5  # probability of added noise (else the data's own noise only)
    snr: tuple[float, float] = (10.0, 60.0)  # b0 signal / sigma of the added Rician noise
    kspace: float = 0.5  # probability of k-space truncation instead of tricubic
    slice_sigma: tuple[float, float] = (0.0, 1.0)  # [LR voxels] extra blur along one axis
    t1_gamma: tuple[float, float] = (0.7, 1.4)
    t1_bias: float = 0.2  # largest relative change of the T1w bias field across a patch
    motion: float = 0.5  # probability of a DWI volume shifted against its b0
    shift: float = 2.0  # [voxels of the data's grid] largest shift per axis

    @classmethod
    def from_dict(cls, values: dict) -> Randomisation:
        """Defaults overridden by ``values`` (the training option ``randomisation``), checked."""
        known = {f.name for f in fields(cls)}
        if set(values) - known:
            unknown = ", ".join(sorted(set(values) - known))
            raise InputError(f"unknown randomisation range(s): {unknown}; known: {', '.join(sorted(known))}")
        number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
        checked = {}
        for name, value in values.items():
            default = getattr(cls(), name)
            if isinstance(default, tuple):
                if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(map(number, value)):
                    raise InputError(f"randomisation {name} must be [low, high], got {value!r}")
                if value[0] > value[1]:
                    raise InputError(
                        f"randomisation {name} must be [low, high] with low ≤ high, got {value!r}"
                    )
                value = (float(value[0]), float(value[1]))
            elif not number(value):
                raise InputError(f"randomisation {name} must be a number, got {value!r}")
            checked[name] = value
        ranges = cls(**checked)
        if not all(0 <= p <= 1 for p in (ranges.kspace, ranges.noise, ranges.motion)):
            raise InputError("randomisation probabilities (kspace, noise, motion) must lie in [0, 1]")
        if min(ranges.snr) <= 0 or min(ranges.bvalue) <= 0 or min(ranges.t1_gamma) <= 0 or ranges.t1_bias < 0:
            raise InputError("randomisation snr, bvalue and t1_gamma must be positive, t1_bias ≥ 0")
        if not 0 <= ranges.shift <= MOTION_MARGIN - 1 or min(ranges.slice_sigma) < 0:
            raise InputError(f"randomisation shift must lie in [0, {MOTION_MARGIN - 1}], slice_sigma ≥ 0")
        return ranges


@dataclass(frozen=True)
class Acquisition:
    """One draw of :class:`Randomisation`."""

    bvalue: float
    snr: float | None  # of the added noise; None: none added
    kspace: bool
    slice_axis: int
    slice_sigma: float
    t1_gamma: float
    t1_bias: tuple[float, float, float]  # the bias field's relative slope per axis, across a patch
    noise_seed: int  # of the noise this acquisition adds
    shift: tuple[float, float, float] | None = None  # [voxels] of the DWI against its b0; None: no motion

    @classmethod
    def draw(cls, rng: np.random.Generator, ranges: Randomisation) -> Acquisition:
        bias = rng.uniform(-1.0, 1.0, 3)
        bias *= ranges.t1_bias / max(np.abs(bias).sum(), 1e-12)  # |field − 1| ≤ t1_bias / 2
        return cls(
            bvalue=float(rng.uniform(*ranges.bvalue)),
            snr=float(rng.uniform(*ranges.snr)) if rng.random() < ranges.noise else None,
            kspace=bool(rng.random() < ranges.kspace),
            slice_axis=int(rng.integers(3)),
            slice_sigma=float(rng.uniform(*ranges.slice_sigma)),
            t1_gamma=float(rng.uniform(*ranges.t1_gamma)),
            t1_bias=tuple(float(b) for b in bias),
            noise_seed=int(rng.integers(2**63)),
            shift=tuple(float(d) for d in rng.uniform(-ranges.shift, ranges.shift, 3))
            if rng.random() < ranges.motion
            else None,
        )

    def move(self, ratio: np.ndarray, s0: np.ndarray) -> np.ndarray:
        """S/S0 of the volume moved by ``shift`` against its b0, from a box of S/S0 ``ratio``
        and mean b0 ``s0`` (0 where S/S0 is not defined) with :data:`MOTION_MARGIN` voxels
        around the patch; returns the patch (the box less the margins)."""
        moved = ndimage.shift(ratio * s0, self.shift, order=1, mode="constant")
        inner = (slice(MOTION_MARGIN, -MOTION_MARGIN),) * 3
        b0 = s0[inner]
        return np.where(b0 > 0, moved[inner] / np.where(b0 > 0, b0, 1.0), 0.0).astype(np.float32)

    def signal(self, ratio: np.ndarray) -> np.ndarray:
        """S/S0 at b = 1000 (any shape) → the HR target: S/S0 at this draw's b-value, with the
        draw's added Rician noise."""
        hr = np.power(np.clip(ratio, 0.0, None), self.bvalue / 1000.0)
        if self.snr is not None:
            sigma, rng = 1.0 / self.snr, np.random.default_rng(self.noise_seed)
            hr = np.hypot(hr + rng.normal(0.0, sigma, hr.shape), rng.normal(0.0, sigma, hr.shape))
        return hr.astype(np.float32)

    def acquire(self, hr: np.ndarray, lr_size: int) -> np.ndarray:
        """The LR input (``lr_size``³) this acquisition measures of the HR target ``hr``."""
        lr = degrade(hr, lr_size, "kspace" if self.kspace else "tricubic")
        if self.slice_sigma > 0:
            lr = ndimage.gaussian_filter1d(lr, self.slice_sigma, axis=self.slice_axis, mode="nearest")
        return lr.astype(np.float32)

    def t1(self, t1: np.ndarray) -> np.ndarray:
        """A normalised T1w patch (cubic) with this draw's contrast and bias field."""
        n = t1.shape[0]
        ramp = (np.arange(n) + 0.5) / n - 0.5  # −0.5 … 0.5 across the patch
        field = 1.0 + sum(
            slope * ramp.reshape([-1 if a == axis else 1 for a in range(3)])
            for axis, slope in enumerate(self.t1_bias)
        )
        return (np.power(np.clip(t1, 0.0, None), self.t1_gamma) * field).astype(np.float32)
