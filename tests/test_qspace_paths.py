"""The joint model's orientation paths (linear, gated) and starting a run from weights of a
model with fewer parts (``train --init``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from test_qspace import TINY_QSPACE

from csrdmri.core.errors import InputError
from csrdmri.core.grid import dst_grid_normalized
from csrdmri.inference.tiling import predict_tiles
from csrdmri.models import build_model
from csrdmri.models.checkpoint import grow_from, load_model, phantom_subjects, save_checkpoint
from csrdmri.models.qspace import shell_input


def assert_tiles_equal_the_whole(model: torch.nn.Module, seed: int = 0) -> None:
    """Tiles of 24 HR voxels decode what one tile over the whole volume does."""
    rng = np.random.default_rng(seed)
    inputs = shell_input(rng.random((28, 16, 15, 14)).astype(np.float32), 1000.0, 6)
    shape = (32, 30, 28)
    whole, tiled = np.zeros((*shape, 28), np.float32), np.zeros((*shape, 28), np.float32)
    for out, tile in ((whole, 200), (tiled, 24)):
        for box, selected, values in predict_tiles(model, inputs, None, shape, tile=tile):
            out[box][selected] = values
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def gain_at_lr_centres(model, plain, shape=(10, 9, 8), seed=1):
    """What ``model`` adds to ``plain``'s corrections at the LR voxels' centres (N, 28), and
    the LR coefficient maps (28, *shape)."""
    inputs = shell_input(np.random.default_rng(seed).random((28, *shape)).astype(np.float32), 1000.0, 6)
    lr = torch.from_numpy(inputs)[None]
    centres = torch.from_numpy(dst_grid_normalized(shape)).reshape(1, -1, 3)
    with torch.no_grad():
        gained = model.decode(model.encode(lr, None), centres) - plain.decode(plain.encode(lr, None), centres)
    return gained[0], inputs[:28]


def test_the_orientation_path_filters_each_order_alike_and_tiles_exactly():
    torch.manual_seed(0)
    plain = build_model(TINY_QSPACE).eval()
    model = build_model({**TINY_QSPACE, "orientation": 3}).eval()
    model.load_state_dict(plain.state_dict(), strict=False)  # the path starts at 0: the same model
    gained, _ = gain_at_lr_centres(model, plain)
    torch.testing.assert_close(gained, torch.zeros_like(gained))
    with torch.no_grad():
        model.orientation.kernels[:, 0, 1, 1, 1] = torch.tensor([0.5, -1.0, 2.0])  # centre taps only
    gained, coefficients = gain_at_lr_centres(model, plain)
    scale = torch.tensor([0.0] + [0.5] * 5 + [-1.0] * 9 + [2.0] * 13)
    expected = torch.from_numpy(coefficients).reshape(28, -1).T * scale
    torch.testing.assert_close(gained, expected, atol=1e-5, rtol=1e-5)
    torch.nn.init.normal_(model.orientation.kernels, std=0.3)
    torch.nn.init.normal_(model.decoder.head.weight, std=0.1)
    assert_tiles_equal_the_whole(model)


def test_the_gated_path_mixes_its_filters_per_order_and_tiles_exactly(tmp_path):
    torch.manual_seed(0)
    plain = build_model(TINY_QSPACE).eval()
    torch.nn.init.normal_(plain.decoder.head.weight, std=0.1)
    path = tmp_path / "plain.safetensors"
    save_checkpoint(path, plain, {"model": TINY_QSPACE})
    config = {**TINY_QSPACE, "gated": 3}
    model = build_model(config).eval()
    assert grow_from(model, config, path) == ["decoder.head.bias", "decoder.head.weight"]
    gained, _ = gain_at_lr_centres(model, plain)  # the gates start at 0: the same model
    torch.testing.assert_close(gained, torch.zeros_like(gained))
    with torch.no_grad():  # gates are order-major: (order 2: σ 0, 1, 2), (order 4: ...), (order 6: ...)
        model.decoder.head.bias[28 + 0] = 0.5  # order 2 by the identity
        model.decoder.head.bias[28 + 4] = -1.0  # order 4 by the Gaussian of σ = 1 LR voxel
    gained, coefficients = gain_at_lr_centres(model, plain)
    smoothed = ndimage.gaussian_filter(coefficients, (0, 1, 1, 1), mode="nearest", truncate=2.0)
    expected = np.zeros_like(coefficients)
    expected[1:6] = 0.5 * coefficients[1:6]
    expected[6:15] = -smoothed[6:15]
    np.testing.assert_allclose(gained.numpy(), expected.reshape(28, -1).T, atol=1e-5)
    torch.nn.init.normal_(model.decoder.head.weight, std=0.1)
    assert_tiles_equal_the_whole(model)


def test_starting_weights_may_gain_parts_but_not_change_them(tmp_path):
    from csrdmri.training.qspace import train_qspace
    from csrdmri.training.qspace_config import QSpaceConfig
    from csrdmri.workflows.train import qspace_config

    torch.manual_seed(0)
    path = tmp_path / "plain.safetensors"
    plain = build_model(TINY_QSPACE)
    torch.nn.init.normal_(plain.decoder.head.weight, std=0.1)
    save_checkpoint(path, plain, {"model": TINY_QSPACE, "training": {"steps": 9, "seed": 7, "subjects": 2}})
    wider = {**TINY_QSPACE, "width": 32}
    with pytest.raises(InputError, match=r"another model .*differs in width"):
        grow_from(build_model(wider), wider, path)
    small = {"steps": 1, "batch": 1, "queries": 32, "lr_size": 8, "subjects": 1, "voxel_size": 3.0, "lr": 0.0}
    config = QSpaceConfig(**small, init=str(path), model={**TINY_QSPACE, "gated": 2})
    train_qspace(tmp_path / "run", config)  # at lr 0 the run's weights are the ones it started from
    model, meta = load_model(tmp_path / "run" / "last.safetensors")
    assert meta["training"]["init"] == str(path)
    assert phantom_subjects(meta) == {7: 3, 0: 2}  # evaluation refuses the init's subjects too
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name][: len(value)], value)
    assert not model.decoder.head.weight[28:].any()  # the gates' rows as built
    saved = meta["training"]
    with pytest.raises(InputError, match="a resumed run continues from its own checkpoint"):
        qspace_config("csr-qspace", {}, 2, saved, init=str(path))
