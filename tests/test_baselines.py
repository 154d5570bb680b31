"""The fixed-scale CNN baselines of Table 1: DCSRN (2x) and ResCNN3D (3x)."""

from __future__ import annotations

import pytest
import torch

from csrdmri.core.resample import resample_torch
from csrdmri.models import build_model
from csrdmri.models.dcsrn import DCSRN, DenseUnit
from csrdmri.models.rescnn3d import ResCNN3D

LR = (1, 1, 10, 10, 10)
SHAPES = [(20, 20, 20), (24, 24, 24), (40, 40, 40), (20, 20, 10)]


def tiny(cls: type, **kwargs) -> torch.nn.Module:
    """A small, seeded instance of a baseline (few channels, so the tests run in seconds)."""
    torch.manual_seed(0)
    if cls is DCSRN:
        return DCSRN(growth=4, **kwargs)
    return ResCNN3D(depth=4, width=8, **kwargs)


def lr_batch(shape=LR, seed: int = 1) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cls", [DCSRN, ResCNN3D])
@pytest.mark.parametrize("shape", SHAPES)
def test_output_shape(cls, shape):
    model = tiny(cls).eval()
    with torch.no_grad():
        out = model(lr_batch(), None, shape)
    assert out.shape == (1, 1, *shape)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("cls", [DCSRN, ResCNN3D])
def test_batch_and_t1_ignored(cls):
    model = tiny(cls).eval()
    assert cls.uses_t1 is False and model.uses_t1 is False
    lr = lr_batch((3, 1, 5, 6, 4))
    t1 = lr_batch((3, 1, 5, 6, 4), seed=2)
    with torch.no_grad():
        out = model(lr, None, (10, 12, 8))
        out_t1 = model(lr, t1, (10, 12, 8))
        single = model(lr[1:2], None, (10, 12, 8))
    assert out.shape == (3, 1, 10, 12, 8)
    torch.testing.assert_close(out, out_t1)
    # Eval mode: each batch item is processed independently.
    torch.testing.assert_close(out[1:2], single, rtol=1e-5, atol=1e-5)


def test_dcsrn_dense_block():
    growth = 5
    model = DCSRN(growth=growth)
    assert model.head.out_channels == 2 * growth
    units = [m for m in model.modules() if isinstance(m, DenseUnit)]
    assert len(units) == 4
    assert [u.conv.in_channels for u in units] == [2 * growth + i * growth for i in range(4)]
    assert all(u.conv.out_channels == growth and u.conv.kernel_size == (3, 3, 3) for u in units)
    assert all(u.norm.num_features == u.conv.in_channels for u in units)
    assert isinstance(units[0].act, torch.nn.ELU)
    assert model.tail.in_channels == 6 * growth and model.tail.out_channels == 1
    assert model.tail.kernel_size == (1, 1, 1)
    assert len([m for m in DCSRN(growth=3, units=2).modules() if isinstance(m, DenseUnit)]) == 2


def test_rescnn3d_layers():
    model = ResCNN3D()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    assert len(convs) == 10
    assert convs[0].in_channels == 1 and convs[-1].out_channels == 1
    assert all(c.out_channels == 64 for c in convs[:-1])
    assert all(c.kernel_size == (3, 3, 3) and c.padding == (1, 1, 1) for c in convs)
    assert model.last_conv is convs[-1]
    assert not isinstance(model.body[-1], torch.nn.ReLU)


def test_rescnn3d_global_residual():
    model = tiny(ResCNN3D).eval()
    with torch.no_grad():
        model.last_conv.weight.zero_()
        model.last_conv.bias.zero_()
        lr = lr_batch()
        out = model(lr, None, (30, 30, 30))
    torch.testing.assert_close(out, resample_torch(lr, (30, 30, 30)), rtol=0, atol=0)


@pytest.mark.parametrize(("cls", "fixed"), [(DCSRN, (20, 20, 20)), (ResCNN3D, (30, 30, 30))])
@pytest.mark.parametrize("shape", [(24, 24, 24), (40, 40, 40), (20, 20, 10)])
def test_other_scales_resample_the_fixed_scale_output(cls, fixed, shape):
    model = tiny(cls).eval()
    lr = lr_batch()
    with torch.no_grad():
        at_fixed = model(lr, None, fixed)
        out = model(lr, None, shape)
    torch.testing.assert_close(out, resample_torch(at_fixed, shape))


@pytest.mark.parametrize("cls", [DCSRN, ResCNN3D])
def test_training_reduces_l1(cls):
    model = tiny(cls).train()
    lr = lr_batch((2, 1, 4, 4, 4))
    fixed = (8, 8, 8) if cls is DCSRN else (12, 12, 12)
    hr = 0.5 * resample_torch(lr, fixed) + 0.2  # a fixed target that the tiny models can fit
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        optimiser.zero_grad()
        loss = (model(lr, None, fixed) - hr).abs().mean()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.95 * losses[0]


@pytest.mark.parametrize(("name", "cls", "scale"), [("dcsrn", DCSRN, 2.0), ("rescnn3d", ResCNN3D, 3.0)])
def test_build_model(name, cls, scale):
    model = build_model(name)
    assert type(model) is cls
    assert model.scale == scale
    assert model.uses_t1 is False
    assert build_model({"architecture": name, "scale": 4.0}).scale == 4.0
