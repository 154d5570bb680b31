"""Training samples of the joint q-space model, simulated on the fly from phantom subjects.

Each sample is a new acquisition of a random patch of a phantom subject
(:mod:`csrdmri.phantom`): a shell of b ∈ [``B_RANGE``] s/mm² with a random number of
directions (a dispersed set under a random rotation), 1–4 b0s, Rician noise of a random SNR at
the HR voxel size. The HR patch (n³, n = round(L·s)) is what is scored; the LR input is its
cubic B-spline downsampling to L³ (the paper's degradation, every volume alike). From it the
sample carries what inference computes on a scan: the mean b0 and 1/S0 inside the dilated
mask, the SH fit of the LR S/S0, the cubic upsampling of each DWI and of the mean b0, and the
T1w downsampled onto the LR grid (and, for a model with a b0 channel, the LR mean b0 as a
fraction of the subject's brain median, its contrast changed at random: :func:`b0_contrast`)
— and, for a model that reads the T1w at the output resolution
(:mod:`csrdmri.models.anatomy`), the T1w on the HR patch itself, misregistered and with its
contrast changed at random (:func:`native_t1`); and, for a model that reads the input's
roll-off, :func:`csrdmri.core.spectrum.measured_rolloff` of a larger block of the mean b0 around
the patch, acquired with the sample's noise and operator (:func:`input_rolloff`: a patch is too
small to measure it on, a scan is measured whole). Everything is drawn from
``numpy.random.default_rng([seed, step])``, so a resumed run sees the samples an uninterrupted
one would.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from dipy.core.gradients import gradient_table
from scipy import ndimage
from scipy.spatial.transform import Rotation

from csrdmri.core.degrade import Degradation, consistent, downsample, random_kspace
from csrdmri.core.grid import normalized, source_index
from csrdmri.core.patches import padded_crop
from csrdmri.core.resample import resample
from csrdmri.core.spectrum import BLOCK, measured_rolloff
from csrdmri.dmri.preprocess import B0_FLOOR, b0_reciprocal, normalise_t1
from csrdmri.dmri.sh import order_for, sh_matrices, sphere_directions
from csrdmri.models.qspace import rolloff_maps, shell_input
from csrdmri.phantom.cohort import draw_subject, subject_t1
from csrdmri.phantom.params import PhantomParams
from csrdmri.phantom.signal import brain_signal, head_region, rician_mean
from csrdmri.training.tensor_loss import fractional_anisotropy, tensor_pinv

B_RANGE = (500.0, 3000.0)
#: Direction counts a sample's shell may have (every SH order, common protocols).
DIRECTION_COUNTS = (6, 8, 10, 12, 15, 16, 20, 24, 30, 32, 40, 48, 60, 64)
SNR_RANGE = (8.0, 40.0)  # HR b0 SNR in white matter
MARGIN = 2  # LR voxels by which the brain mask is dilated (inference's default)
#: Misregistration of the native T1w: with probability ``T1_SHIFT_P`` an integer shift of up to
#: ``T1_SHIFT`` HR voxels per axis; its contrast raised to a power in ``T1_GAMMA`` and given
#: Gaussian noise of a standard deviation in ``T1_NOISE`` (normalised units).
T1_SHIFT, T1_SHIFT_P = 2, 0.5
T1_GAMMA = (0.7, 1.4)
T1_NOISE = (0.0, 0.05)
#: The relative mean b0 of a model with a b0 channel: multiplied by a factor in ``B0_SCALE``
#: (its brain median on a scan is not the phantom's) and raised to a power in ``B0_GAMMA``
#: (scanners' b0 contrast between tissues differs with TE and TR).
B0_SCALE = (0.9, 1.1)
B0_GAMMA = (0.8, 1.25)


@dataclass
class SimulatedSubject:
    """A phantom subject ready for patch simulation."""

    params: PhantomParams
    tissue: dict[str, np.ndarray]  # per brain voxel arrays (mask C order)
    rows: np.ndarray  # (X, Y, Z) int32: the voxel's row in ``tissue``, -1 outside the brain
    head: np.ndarray  # (X, Y, Z) bool: where the image carries noise
    t1: np.ndarray  # (X, Y, Z) float32, normalised in the brain
    centres: np.ndarray  # (M, 3) brain voxels patches are centred on

    @classmethod
    def draw(cls, index: int, seed: int, params: PhantomParams) -> SimulatedSubject:
        draw = draw_subject(index, seed, params)
        mask = draw.anatomy.mask
        rows = np.full(mask.shape, -1, np.int32)
        rows[mask] = np.arange(int(mask.sum()), dtype=np.int32)
        t1 = normalise_t1(subject_t1(draw, params).astype(np.float32), mask)
        centres = np.argwhere(mask)[::97]
        return cls(params, draw.tissue(), rows, head_region(mask, params.voxel_size), t1, centres)

    @functools.cached_property
    def b0_level(self) -> float:
        """The median noise-free b0 in the brain (computed when a b0 channel first needs it)."""
        return float(np.median(self.b0_signal))

    @functools.cached_property
    def b0_signal(self) -> np.ndarray:
        """The noise-free b0 in the brain (M,), mask C order."""
        b0 = gradient_table(np.zeros(1), bvecs=np.zeros((1, 3)))
        return brain_signal(self.tissue, self.params, b0, slice(None))[:, 0]

    @functools.cached_property
    def b0_volume(self) -> np.ndarray:
        """The noise-free b0 (X, Y, Z) float32, 0 outside the brain."""
        out = np.zeros(self.rows.shape, np.float32)
        out[self.rows >= 0] = self.b0_signal
        return out


@dataclass
class Sample:
    """One simulated LR/HR pair of one shell; arrays float32 unless said otherwise.

    ``inputs`` (30 to 34, L, L, L) the encoder's shell maps; ``t1`` (1, L, L, L) or None; ``native``
    (1, n + 2r, n + 2r, n + 2r) the T1w on the HR patch padded by the anatomy network's radius
    ``r``, or None; ``index`` (Q, 3) int64 the queries' HR voxels in the patch; ``coords``
    (Q, 3) normalised LR coordinates of the HR queries; ``target`` (Q, K) the HR DWIs there,
    ``expected`` (Q, K) their expectation over the noise given the noise-free signal (the Rician
    mean), ``cubic`` (Q, K)
    their cubic interpolation from the LR, ``s0`` (Q,) the cubic mean b0, ``fa`` (Q,) the FA of
    the noise-free HR signal (None: unknown, a real scan's sample), ``basis`` (K, 28) the SH
    synthesis matrix of the shell's directions, ``tensor`` (6, K) its tensor fit
    (:func:`~csrdmri.training.tensor_loss.tensor_pinv`), ``consistent`` (Q, K) or None the
    expectation made consistent with the input (:func:`consistent_expectation`) — all
    intensities divided by the LR mean b0 of the brain, so that losses compare across samples.
    """

    inputs: np.ndarray
    t1: np.ndarray | None
    coords: np.ndarray
    target: np.ndarray
    expected: np.ndarray
    cubic: np.ndarray
    s0: np.ndarray
    fa: np.ndarray | None
    basis: np.ndarray
    tensor: np.ndarray
    native: np.ndarray | None = None
    index: np.ndarray | None = None
    consistent: np.ndarray | None = None


def draw_protocol(rng: np.random.Generator) -> tuple[float, np.ndarray, int, float]:
    """A shell's b-value, its directions (K, 3), the number of b0s and the HR SNR."""
    bvalue = float(rng.uniform(*B_RANGE))
    directions = Rotation.random(random_state=rng).apply(sphere_directions(int(rng.choice(DIRECTION_COUNTS))))
    return bvalue, directions, int(rng.integers(1, 5)), float(rng.uniform(*SNR_RANGE))


def simulate_patch(
    subject: SimulatedSubject, box: tuple[slice, ...], bvals: np.ndarray, bvecs: np.ndarray, snr: float, rng
) -> tuple[np.ndarray, np.ndarray]:
    """The noisy and the noise-free HR signal (n, n, n, V) of ``box`` for the b-table
    (``bvals``, ``bvecs``)."""
    gtab = gradient_table(bvals, bvecs=bvecs)
    rows = subject.rows[box]
    out = np.zeros((*rows.shape, len(bvals)), np.float32)
    inside = rows >= 0
    if inside.any():
        out[inside] = brain_signal(subject.tissue, subject.params, gtab, rows[inside])
    sigma = subject.params.s0_wm / snr
    noise = rng.standard_normal(size=(2, *out.shape), dtype=np.float32) * np.float32(sigma)
    noisy = np.sqrt((out + noise[0]) ** 2 + noise[1] ** 2)
    return np.where(subject.head[box][..., None], noisy, 0.0).astype(np.float32), out


def consistent_expectation(
    clean: np.ndarray, lr: np.ndarray, sigma: float, head: np.ndarray, method: Degradation
) -> np.ndarray:
    """The noisy HR DWIs' expectation given their noise-free signal ``clean`` (n, n, n, K) — their
    Rician mean inside ``head`` (n, n, n) bool, 0 outside — made consistent with their input
    ``lr`` (L, L, L, K), the noisy DWIs degraded by ``method`` (:func:`csrdmri.core.degrade.consistent`).

    Of the noisy DWIs' noise it keeps the part the input determines (its projection onto what
    the operator sees) and drops the rest, which no input can predict: for Gaussian noise that
    rest is independent of the input, so the best estimate from the input is the same as
    against the noisy DWIs (their expectation given the input does not change), but the target
    carries a fraction about 1/s³ of their noise at scale ``s``. float32, (n, n, n, K).
    """
    expected = np.zeros_like(clean)
    expected[head] = rician_mean(clean[head], sigma)
    return consistent(expected, lr, method)


def native_t1(subject: SimulatedSubject, box: tuple[slice, ...], radius: int, rng) -> np.ndarray:
    """The subject's T1w over ``box`` padded by ``radius`` (n + 2r)³, as a scan's T1w may be:
    shifted against the DWIs, with another contrast and noise (module constants)."""
    shift = rng.integers(-T1_SHIFT, T1_SHIFT + 1, size=3) if rng.random() < T1_SHIFT_P else np.zeros(3, int)
    start = np.array([s.start for s in box]) - radius + shift
    t1 = padded_crop(subject.t1, start, (box[0].stop - box[0].start + 2 * radius,) * 3)
    t1 = t1 ** np.float32(rng.uniform(*T1_GAMMA))
    noise = rng.standard_normal(t1.shape, dtype=np.float32) * np.float32(rng.uniform(*T1_NOISE))
    return np.maximum(t1 + noise, 0.0)


def b0_contrast(relative: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The relative mean b0 with its scale and contrast changed at random (module constants)."""
    scaled = relative * np.float32(rng.uniform(*B0_SCALE))
    return np.maximum(scaled, 0.0) ** np.float32(rng.uniform(*B0_GAMMA))


def input_rolloff(
    subject: SimulatedSubject,
    box: tuple[slice, ...],
    lr_size: int,
    method: Degradation,
    n_b0: int,
    snr: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """The measured roll-off (3,) of the patch ``box``'s input: the mean of ``n_b0`` noisy b0s
    (SNR ``snr``) of a block ``BLOCK`` LR voxels a side around it, degraded at the patch's scale
    (``box`` side over ``lr_size``) by ``method``."""
    side = round(BLOCK * (box[0].stop - box[0].start) / lr_size)
    start = [s.start + (s.stop - s.start) // 2 - side // 2 for s in box]
    clean = padded_crop(subject.b0_volume, start, (side,) * 3)
    head = padded_crop(subject.head, start, (side,) * 3)
    sigma = np.float32(subject.params.s0_wm / snr)
    noise = rng.standard_normal(size=(n_b0, 2, *clean.shape), dtype=np.float32) * sigma
    b0 = np.where(head, np.sqrt((clean + noise[:, 0]) ** 2 + noise[:, 1] ** 2).mean(axis=0), 0.0)
    brain = padded_crop(subject.rows >= 0, start, (side,) * 3)
    lr_brain = resample(brain.astype(np.float32), (BLOCK,) * 3) > 0.5
    return measured_rolloff(downsample(b0.astype(np.float32), (BLOCK,) * 3, method), lr_brain)


def patch_box(subject: SimulatedSubject, n: int, rng: np.random.Generator) -> tuple[slice, ...]:
    """An n³ box around a random brain voxel, inside the subject's grid."""
    centre = subject.centres[rng.integers(len(subject.centres))]
    shape = subject.rows.shape
    start = [int(np.clip(c - n // 2, 0, s - n)) for c, s in zip(centre, shape, strict=True)]
    return tuple(slice(a, a + n) for a in start)


def draw_sample(
    subject: SimulatedSubject,
    rng: np.random.Generator,
    lr_size: int,
    scale_range: tuple[float, float],
    queries: int,
    with_t1: bool,
    kspace: float = 0.0,
    variants: bool = False,
    radius: int = 0,
    with_b0: bool = False,
    rolloff: bool = False,
    consistent_target: bool = False,
) -> Sample | None:
    """One simulated sample (None when the patch holds too little brain to normalise); its LR
    DWIs made by k-space truncation with probability ``kspace`` (with random apodisation,
    partial Fourier and slice profile if ``variants``), else tricubic
    (:mod:`csrdmri.core.degrade`; the T1w always tricubic, as at inference). With ``radius``
    > 0, the T1w at the HR patch (:func:`native_t1`) too, the LR one made from it; with
    ``with_b0``, the relative mean b0 among the inputs; with ``rolloff``, the input's measured
    roll-off (:func:`input_rolloff`) after them (both drawn last: the other draws are those of
    a sample without them); with ``consistent_target``, :func:`consistent_expectation` at the
    queries (no draw)."""
    n = round(float(lr_size * rng.uniform(*scale_range)))
    box = patch_box(subject, n, rng)
    bvalue, directions, n_b0, snr = draw_protocol(rng)
    k = len(directions)
    bvals = np.r_[np.zeros(n_b0), np.full(k, bvalue)]
    bvecs = np.r_[np.tile([[1.0, 0.0, 0.0]], (n_b0, 1)), directions]
    hr, clean = simulate_patch(subject, box, bvals, bvecs, snr, rng)
    method = draw_operator(rng, kspace, variants)
    relative_level = subject.b0_level if with_b0 else None
    shared = acquire(
        hr, subject.rows[box] >= 0, n_b0, bvalue, directions, lr_size, method, queries, rng, relative_level
    )
    if shared is None:
        return None
    index = tuple(shared.picked.T)
    sigma = subject.params.s0_wm / snr
    expected = np.where(subject.head[box][index][:, None], rician_mean(clean[index][:, n_b0:], sigma), 0.0)
    projected = None
    if consistent_target:
        whole = consistent_expectation(
            clean[..., n_b0:], shared.lr[..., n_b0:], sigma, subject.head[box], method
        )
        projected = (whole[index] / shared.scale).astype(np.float32)
    clean = torch.from_numpy(clean[index])
    fa = fractional_anisotropy(clean[:, n_b0:], clean[:, :n_b0].mean(dim=-1), torch.from_numpy(shared.tensor))
    native = native_t1(subject, box, radius, rng) if with_t1 and radius else None
    t1_hr = subject.t1[box] if native is None else native[(slice(radius, radius + n),) * 3]
    t1 = resample(t1_hr, (lr_size,) * 3)[None] if with_t1 else None
    inputs = shared.inputs
    if with_b0:
        inputs[-1] = b0_contrast(inputs[-1], rng)
    if rolloff:
        measured = input_rolloff(subject, box, lr_size, method, n_b0, snr, rng)
        inputs = np.concatenate([inputs, rolloff_maps(measured, inputs.shape[1:])])
    return Sample(
        inputs,
        t1,
        shared.coords,
        hr[index][:, n_b0:] / shared.scale,
        (expected / shared.scale).astype(np.float32),
        shared.cubic,
        shared.s0,
        fa.numpy(),
        shared.basis,
        shared.tensor,
        None if native is None else native[None],
        shared.picked if radius else None,
        projected,
    )


@dataclass
class Acquired:
    """What inference computes from a sample's LR input, and where the sample is scored
    (:func:`acquire`; float32 unless said otherwise).

    ``lr`` (L, L, L, V) the input (b0s first); ``inputs`` (30 or 31, L, L, L) the encoder's shell
    maps (:func:`~csrdmri.models.qspace.shell_input`); ``picked`` (Q, 3) int64 the queries' HR
    voxels; ``scale`` the input's mean b0 in the brain, the unit of every intensity below;
    ``cubic`` (Q, K) the cubic interpolation of the DWIs and ``s0`` (Q,) of the mean b0 there;
    ``coords`` (Q, 3) the queries in normalised LR coordinates; ``basis`` (K, 28) and ``tensor``
    (6, K) as :class:`Sample`'s.
    """

    lr: np.ndarray
    inputs: np.ndarray
    picked: np.ndarray
    scale: float
    cubic: np.ndarray
    s0: np.ndarray
    coords: np.ndarray
    basis: np.ndarray
    tensor: np.ndarray


def draw_operator(rng: np.random.Generator, kspace: float, variants: bool) -> Degradation:
    """The operator that makes a sample's input: k-space truncation with probability ``kspace``
    (with random apodisation, partial Fourier and slice profile if ``variants``), else tricubic."""
    if kspace > 0 and rng.random() < kspace:  # no draw at 0: old runs replay
        return random_kspace(rng) if variants else "kspace"
    return "tricubic"


def acquire(
    hr: np.ndarray,
    brain: np.ndarray,
    n_b0: int,
    bvalue: float,
    directions: np.ndarray,
    lr_size: int,
    method: Degradation,
    queries: int,
    rng: np.random.Generator,
    b0_level: float | None = None,
) -> Acquired | None:
    """Degrade the HR patch ``hr`` (n, n, n, V: ``n_b0`` b0s, then one shell of b-value
    ``bvalue`` along ``directions`` (K, 3)) to L³ (``lr_size``) by ``method``, compute from it
    what inference computes, and pick ``queries`` HR voxels to score where the input has a b0;
    ``brain`` (n, n, n) bool is the patch's brain; with ``b0_level`` the mean b0 divided by it
    is the encoder's last map (a model with a b0 channel). None when the patch holds too little
    brain to normalise."""
    n = hr.shape[0]
    lr = downsample(hr, (lr_size,) * 3, method)
    lr_mask = resample(brain.astype(np.float32), (lr_size,) * 3) > 0.5
    if lr_mask.sum() < 8:
        return None
    b0 = lr[..., :n_b0].mean(axis=-1)
    region = ndimage.binary_dilation(lr_mask, iterations=MARGIN)
    reciprocal = b0_reciprocal(b0, region, floor=B0_FLOOR * float(np.percentile(b0[lr_mask], 99)))
    order = order_for(len(directions))
    fit, basis = sh_matrices(directions, order)
    ratio = lr[..., n_b0:] * reciprocal[..., None]
    relative = None if b0_level is None else b0 / np.float32(b0_level)
    inputs = shell_input(np.moveaxis(ratio @ fit, -1, 0), bvalue, order, relative)
    where = resample((reciprocal > 0).astype(np.float32), (n,) * 3, order=0) > 0.5
    picked = np.argwhere(where)
    if len(picked) == 0:
        return None
    picked = picked[rng.choice(len(picked), size=queries, replace=len(picked) < queries)]
    index = tuple(picked.T)
    scale = float(np.mean(b0[lr_mask]))
    cubic = resample(lr[..., n_b0:], (n,) * 3)[index] / scale
    s0 = np.maximum(resample(b0, (n,) * 3)[index], 0.0) / scale
    coords = normalized(np.stack([source_index(lr_size, n)[i] for i in index], axis=-1), lr_size)
    return Acquired(
        lr,
        inputs,
        picked,
        scale,
        cubic.astype(np.float32),
        s0.astype(np.float32),
        coords.astype(np.float32),
        basis.astype(np.float32),
        tensor_pinv(bvalue, directions),
    )
