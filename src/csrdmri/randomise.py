"""Domain randomisation of training pairs (beyond the paper): what differs between scanners,
drawn afresh for every pair so that a model does not learn one acquisition.

Per pair, on top of the paper's protocol (:func:`csrdmri.data.sample_batch`):

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

Voxel size and anisotropy of the scan itself are covered by the scale range of training and by
the slice profile. The ranges below are the defaults; :class:`Randomisation` documents each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from csrdmri.patches import degrade


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
        )

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
