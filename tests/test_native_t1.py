"""The T1w at the output resolution (issue 22): features at world positions, tiles, training."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
from conftest import oblique_affine
from test_qspace import TINY_QSPACE, joint_upsampler, multishell

from csrdmri.core.grid import TargetGrid, dst_grid_normalized
from csrdmri.core.patches import padded_crop
from csrdmri.dmri.preprocess import t1_on_grid
from csrdmri.dmri.scan import PreparedScan
from csrdmri.inference.joint import native_t1
from csrdmri.inference.series import new_output, upsample_series
from csrdmri.inference.tiling import predict_tiles
from csrdmri.inference.upsampler import Options, Upsampler
from csrdmri.models import build_model
from csrdmri.models.checkpoint import save_checkpoint
from csrdmri.models.qspace import shell_input
from csrdmri.phantom.params import PhantomParams
from csrdmri.training import qspace_data
from csrdmri.training.qspace_config import QSpaceConfig

NATIVE = {**TINY_QSPACE, "t1_features": 4}


def native_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(NATIVE).eval()
    torch.nn.init.normal_(model.decoder.head.weight, std=0.1)
    return model


def features(model: torch.nn.Module, t1: np.ndarray) -> np.ndarray:
    """The anatomy network's maps (F, X, Y, Z) of a whole volume, zero-padded beyond it."""
    r = model.anatomy.radius
    padded = padded_crop(t1, (-r,) * 3, [n + 2 * r for n in t1.shape])
    with torch.no_grad():
        return model.anatomy(torch.from_numpy(padded)[None, None])[0].numpy()


def test_tiles_with_the_native_t1_decode_what_the_untiled_model_decodes():
    model = native_model()
    rng = np.random.default_rng(0)
    inputs = shell_input(rng.random((28, 16, 15, 14)).astype(np.float32), 1500.0, 4)
    t1 = rng.random((16, 15, 14)).astype(np.float32)
    shape = (32, 30, 28)
    native = rng.random(shape).astype(np.float32)
    whole = np.zeros((*shape, 28), np.float32)
    tiled = np.zeros_like(whole)
    for out, tile in ((whole, 200), (tiled, 24)):
        blocks = predict_tiles(model, inputs, t1, shape, tile=tile, chunk=500, native=native)
        for box, selected, values in blocks:
            out[box][selected] = values
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    anatomy = torch.from_numpy(features(model, native).reshape(4, -1).T.copy())[None]
    with torch.no_grad():
        coords = torch.from_numpy(dst_grid_normalized(shape)).reshape(1, -1, 3)
        latent = model.encode(torch.from_numpy(inputs)[None], torch.from_numpy(t1)[None, None])
        direct = model.decode(latent, coords, anatomy)[0].reshape(*shape, 28).numpy()
    np.testing.assert_allclose(whole, direct, atol=1e-5)
    where = np.zeros(shape, bool)
    where[5:20, 3:25, 7:16] = rng.random((15, 22, 9)) > 0.5  # a mask: slabs cropped to its voxels
    masked = np.zeros_like(whole)
    for box, selected, values in predict_tiles(model, inputs, t1, shape, where, tile=24, native=native):
        masked[box][selected] = values
    np.testing.assert_allclose(masked[where], whole[where], atol=1e-5)
    plain = np.zeros_like(whole)
    for box, selected, values in predict_tiles(model, inputs, t1, shape, tile=24):
        plain[box][selected] = values
    assert np.abs(plain - whole).max() > 1e-3  # the native T1w is read


def test_a_translated_t1w_gives_translated_features(tmp_path):
    """The T1w is read at world positions: moving it by 2 output voxels along the grid's first
    axis moves its features by 2 voxels."""
    grid_affine = oblique_affine(zooms=(1.0, 1.0, 1.0))
    shape = (20, 18, 16)
    blob = np.zeros((40, 36, 32), np.float32)
    blob[12:28, 10:26, 9:23] = np.random.default_rng(1).random((16, 16, 14)) + 1.0
    t1_affine = grid_affine @ np.diag([0.5, 0.5, 0.5, 1.0])  # a finer T1w on the same field of view
    moved = t1_affine.copy()
    moved[:3, 3] += 2 * grid_affine[:3, 0]  # two output voxels along the grid's first axis
    mask = np.ones(shape, bool)
    maps = []
    for name, affine in (("t1", t1_affine), ("moved", moved)):
        nib.save(nib.Nifti1Image(blob, affine), tmp_path / f"{name}.nii.gz")
        on_grid = t1_on_grid(tmp_path / f"{name}.nii.gz", grid_affine, shape, mask)
        maps.append(features(native_model(), on_grid))
    np.testing.assert_allclose(maps[1][:, 2:], maps[0][:, :-2], atol=1e-4)
    assert np.abs(maps[1] - maps[0]).max() > 1e-2


def test_training_samples_carry_the_t1w_at_the_patch():
    config = QSpaceConfig(model=NATIVE)
    assert config.radius == 3 and QSpaceConfig().radius == 0
    params = PhantomParams(voxel_size=2.5, texture_sd=0.0)
    subject = qspace_data.SimulatedSubject.draw(0, 0, params)
    rng = np.random.default_rng(0)
    sample = None
    while sample is None:
        sample = qspace_data.draw_sample(subject, rng, 8, (1.6, 2.0), 16, True, radius=3)
    n = sample.native.shape[-1] - 6
    assert sample.native.shape == (1, n + 6, n + 6, n + 6) and sample.index.shape == (16, 3)
    assert sample.index.min() >= 0 and sample.index.max() < n
    plain = qspace_data.draw_sample(subject, np.random.default_rng(0), 8, (1.6, 2.0), 16, True)
    assert plain is None or plain.native is None


def test_the_series_pipeline_reads_the_t1w_on_the_output_grid(tmp_path):
    series = multishell(tmp_path, shells=((1000.0, 10),))
    t1_path = tmp_path / "t1w.nii.gz"
    t1 = np.random.default_rng(2).random((24, 22, 18)).astype(np.float32) + 0.5
    nib.save(nib.Nifti1Image(t1, series.affine @ np.diag([0.5, 0.5, 0.5, 1.0])), t1_path)
    grid = TargetGrid.over((*series.shape, series.data.shape[3]), series.affine, scale=(2.0,) * 3)
    scan = PreparedScan.prepare(series, t1=t1_path, shell=None)
    model = native_model()
    save_checkpoint(tmp_path / "native.safetensors", model, {"model": NATIVE})
    up = Upsampler.load(str(tmp_path / "native.safetensors"))
    assert native_t1(up.model, scan, grid).shape == grid.shape
    assert native_t1(joint_upsampler(tmp_path, zero=True).model, scan, grid) is None  # no branch
    outputs = []
    for s in (scan, PreparedScan.prepare(series, shell=None)):
        out = new_output((*grid.shape, series.data.shape[3]))
        upsample_series(series, grid, up, out, s, Options(safeguard="off"))
        outputs.append(out)
    assert np.isfinite(outputs[0]).all() and np.abs(outputs[0] - outputs[1]).max() > 1e-2
