"""The CSR-dMRI objective: L1 in the image domain plus an L1 in the frequency domain."""

from __future__ import annotations

import torch

#: The paper's weight of the frequency-domain term.
FFT_WEIGHT = 0.01


def fft_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Frequency-domain L1, the paper's ``ℓ_k``, made precise.

    ``mean |F(pred) − F(target)|`` over all frequencies, where ``F`` is the 3D DFT over the last
    three axes with ``norm="ortho"`` (unitary: by Parseval the spectra have the image's energy,
    so the term is on the same scale as the image-domain loss at any patch size) and ``|·|`` is
    the modulus of the complex difference — not the difference of magnitudes, which would ignore
    phase, i.e. where structures are.
    """
    diff = torch.fft.fftn(pred, dim=(-3, -2, -1), norm="ortho") - torch.fft.fftn(
        target, dim=(-3, -2, -1), norm="ortho"
    )
    return diff.abs().mean()


def csr_loss(pred: torch.Tensor, target: torch.Tensor, fft_weight: float = FFT_WEIGHT) -> torch.Tensor:
    """``L1(pred, target) + fft_weight · fft_l1(pred, target)`` over whole HR patches."""
    loss = (pred - target).abs().mean()
    return loss + fft_weight * fft_l1(pred, target) if fft_weight else loss
