"""The CSR-dMRI / ArSSR INR model, its MLP and skip, the FFT loss and the registry."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_INR

from csrdmri.core.errors import InputError
from csrdmri.core.resample import resample_torch
from csrdmri.models import build_model
from csrdmri.models.fixed_head import pixel_shuffle_3d
from csrdmri.models.inr import INR, ImplicitMLP
from csrdmri.models.losses import FFT_WEIGHT, csr_loss, fft_l1

FIXED_SIZES = {k: v for k, v in TINY_INR.items() if k not in ("width", "depth")}


@pytest.mark.parametrize("shape", [(20, 20, 20), (24, 24, 24), (40, 40, 40), (20, 20, 10), (13, 17, 11)])
@pytest.mark.parametrize(("use_t1", "coord", "residual"), [(True, "global", False), (False, "local", True)])
def test_inr_output_shapes(shape, use_t1, coord, residual):
    model = build_model(
        {"architecture": "inr", **TINY_INR, "use_t1": use_t1, "coord": coord, "residual": residual}
    )
    lr = torch.rand(2, 1, 10, 10, 10)
    t1 = torch.rand(2, 1, 10, 10, 10) if use_t1 else None
    out = model(lr, t1, shape)
    assert out.shape == (2, 1, *shape) and torch.isfinite(out).all()
    assert model.uses_t1 is use_t1


def test_named_models_follow_the_paper():
    csr, arssr = build_model("csr-dmri"), build_model("arssr")
    assert isinstance(csr, INR) and csr.uses_t1 and not arssr.uses_t1
    assert csr.encoder.sfe1.in_channels == 2 and arssr.encoder.sfe1.in_channels == 1
    assert csr.encoder.out.out_channels == 128 and len(csr.encoder.blocks) == 8
    assert len(csr.decoder.hidden) == 8 and csr.decoder.hidden[0].out_features == 256
    with pytest.raises(ValueError, match="uses a T1w"):
        csr(torch.rand(1, 1, 10, 10, 10), None, (20, 20, 20))


def test_mlp_skip_feeds_the_input_to_the_fifth_layer():
    mlp = ImplicitMLP(in_features=11, width=16, depth=8, skip_at=4)
    assert [layer.in_features for layer in mlp.hidden] == [11, 16, 16, 16, 16 + 11, 16, 16, 16]
    with torch.no_grad():  # silence layers 1-4: only the skip can carry the input forward
        for layer in mlp.hidden[:4]:
            layer.weight.zero_()
            layer.bias.zero_()
    x = torch.randn(64, 11)
    out = mlp(x)
    assert out.shape == (64, 1) and out.std() > 0


def test_residual_model_starts_at_tricubic():
    model = build_model({"architecture": "inr", **TINY_INR, "residual": True})
    lr, t1 = torch.rand(1, 1, 10, 10, 10), torch.rand(1, 1, 10, 10, 10)
    torch.testing.assert_close(model(lr, t1, (24, 24, 24)), resample_torch(lr, (24, 24, 24)))


def test_fft_loss_values():
    a = torch.zeros(4, 4, 4)
    b = torch.zeros(4, 4, 4)
    b[0, 0, 0] = 1.0
    # A delta has a flat unitary spectrum of modulus 1/sqrt(64).
    assert fft_l1(a, b).item() == pytest.approx(0.125)
    assert csr_loss(a, b).item() == pytest.approx(1 / 64 + FFT_WEIGHT * 0.125)
    assert csr_loss(a, b, fft_weight=0.0).item() == pytest.approx(1 / 64)
    # The modulus of the complex difference, not the difference of magnitudes: a shifted pattern
    # has the same magnitude spectrum but is penalised.
    pattern = torch.rand(6, 6, 6)
    shifted = torch.roll(pattern, 2, dims=0)
    assert fft_l1(pattern, shifted).item() > 0.05


def test_registry_errors():
    with pytest.raises(InputError, match="unknown model"):
        build_model("srgan")
    with pytest.raises(InputError, match="unknown architecture"):
        build_model({"architecture": "transformer"})
    with pytest.raises(InputError, match="bad configuration"):
        build_model({"architecture": "inr", "colour": "red"})


def test_pixel_shuffle_puts_each_channel_at_its_sub_voxel():
    r = 2
    x = torch.zeros(1, r**3, 3, 4, 5)
    for a in range(r):
        for b in range(r):
            for d in range(r):
                x[0, (a * r + b) * r + d] = 100 * a + 10 * b + d
    x += torch.arange(3).reshape(3, 1, 1) * 1000  # LR voxel index along the first axis
    y = pixel_shuffle_3d(x, r)
    assert y.shape == (1, 1, 6, 8, 10)
    assert y[0, 0, 3, 2, 5].item() == 1000 * 1 + 100 * 1 + 10 * 0 + 1


@pytest.mark.parametrize("shape", [(30, 30, 30), (20, 20, 20), (24, 24, 10)])
def test_fixed_head_model_reaches_any_grid(shape):
    model = build_model({"architecture": "rdn-fixed", **FIXED_SIZES, "scale": 3})
    lr, t1 = torch.rand(2, 1, 10, 10, 10), torch.rand(2, 1, 10, 10, 10)
    out = model(lr, t1, shape)
    assert out.shape == (2, 1, *shape) and torch.isfinite(out).all()
    residual = build_model({"architecture": "rdn-fixed", **FIXED_SIZES, "use_t1": False, "residual": True})
    # Zero head: tricubic to 3x, then tricubic to the target grid.
    expected = resample_torch(resample_torch(lr, (30, 30, 30)), shape)
    torch.testing.assert_close(residual(lr, None, shape), expected)
    assert build_model("rdn-fixed-t1").uses_t1 and not build_model("rdn-fixed").uses_t1
