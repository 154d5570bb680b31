"""Thin slabs: a slab super-resolved on its own equals the same slab of a whole-volume run away
from the cut (issue 21), for the per-volume and the joint q-space models."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import gradients, oblique_affine, write_dwi

from csrdmri.core.grid import TargetGrid
from csrdmri.dmri.scan import PreparedScan
from csrdmri.inference.series import new_output, upsample_series
from csrdmri.inference.tiling import encoder_halo
from csrdmri.inference.upsampler import Options, Upsampler
from csrdmri.io.layout import find_dataset
from csrdmri.io.nifti import load_dwi
from csrdmri.models import build_model
from csrdmri.models.checkpoint import save_checkpoint

TINY = {
    "qspace": {"architecture": "qspace", "latent": 8, "g0": 8, "growth": 8, "blocks": 2, "layers": 2}
    | {"width": 16, "depth": 3, "skip_at": 1},
    "inr": {"architecture": "inr", "use_t1": False, "latent": 8, "g0": 8, "growth": 8, "blocks": 2}
    | {"layers": 2, "width": 16, "depth": 3, "skip_at": 1, "coord": "local", "residual": True},
}


def series_with_depth(tmp_path, depth: int):
    """A 10×9×``depth`` oblique series, 1 b0 + 12 directions at b = 1000, all brain-bright."""
    rng = np.random.default_rng(7)
    bvals, bvecs = gradients(1, 12, 1000.0, seed=3)
    shape = (10, 9, depth)
    base = 600 + 400 * rng.random(shape)
    fibre = rng.normal(size=(*shape, 3))
    fibre /= np.linalg.norm(fibre, axis=-1, keepdims=True)
    cos2 = np.einsum("xyzc,vc->xyzv", fibre, bvecs) ** 2
    data = (base[..., None] * np.exp(-bvals * 1e-3 * (0.3 + 1.2 * cos2))).astype(np.float32)
    return load_dwi(find_dataset(write_dwi(tmp_path / "in", data, oblique_affine(), bvals, bvecs)))


def random_model(tmp_path, name: str) -> Upsampler:
    torch.manual_seed(0)
    model = build_model(TINY[name])
    for p in model.parameters():  # a head at zero would return cubic everywhere
        torch.nn.init.normal_(p, std=0.1)
    path = tmp_path / f"{name}.safetensors"
    save_checkpoint(path, model, {"model": TINY[name]})
    return Upsampler.load(str(path))


def run(series, up, floor: float):
    """2× upsampling with the whole series as the brain and a given b0 floor (both global
    quantities a slab would otherwise find on its own)."""
    grid = TargetGrid.over((*series.shape, series.data.shape[3]), series.affine, scale=(2.0,) * 3)
    scan = PreparedScan.prepare(series, shell=None)
    scan = replace(scan, mask=np.ones(series.shape, bool), floor=floor)
    out = new_output((*grid.shape, series.data.shape[3]))
    upsample_series(series, grid, up, out, scan, Options(safeguard="off"))  # its weight is global too
    return out


@pytest.mark.parametrize("name", ["qspace", "inr"])
def test_a_slab_equals_the_same_slab_of_the_whole_volume_away_from_the_cut(tmp_path, name):
    series = series_with_depth(tmp_path, 40)
    up = random_model(tmp_path, name)
    floor = PreparedScan.prepare(series, shell=None).floor
    whole = run(series, up, floor)
    start, stop = 6, 34  # LR slices of the slab
    slab = replace(
        series,
        data=np.ascontiguousarray(series.data[:, :, start:stop]),
        affine=series.affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, start], [0, 0, 0, 1.0]]),
    )
    cut = run(slab, up, floor)
    # LR slices farther than the encoder's halo from both cuts see no difference; the cubic
    # spline's prefilter reaches farther but decays by 0.27 per voxel.
    away = encoder_halo(up.model) + 1
    inner = slice(2 * away, 2 * (stop - start - away))
    same = whole[:, :, 2 * start : 2 * stop][:, :, inner]
    assert np.abs(cut - whole[:, :, 2 * start : 2 * stop]).max() > 1e-2  # the cut does matter near it
    np.testing.assert_allclose(cut[:, :, inner], same, atol=1e-5 * np.abs(same).max())
