"""Whole-series super-resolution with a model: tiling, masks, units, b-tables, refusals."""

from __future__ import annotations

import json
import logging

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import TINY_INR, assert_user_error, gradients, oblique_affine, real_scan, run, write_dwi
from dipy.io import read_bvals_bvecs

from csrdmri.core.errors import InputError
from csrdmri.core.grid import source_index
from csrdmri.core.resample import resample
from csrdmri.dmri.preprocess import brain_mask
from csrdmri.inference.tiling import decode_volume, encoder_halo, plan_tiles
from csrdmri.models import build_model
from csrdmri.models.checkpoint import save_checkpoint
from csrdmri.workflows.upsample import upsample_dataset


def tiny_model(coord: str = "local", residual: bool = True, use_t1: bool = True):
    """A small INR with a non-zero output layer (so it differs from tricubic)."""
    torch.manual_seed(0)
    config = {"architecture": "inr", **TINY_INR, "coord": coord, "residual": residual, "use_t1": use_t1}
    model = build_model(config)
    torch.nn.init.normal_(model.decoder.head.weight, std=0.05)
    return model.eval(), config


@pytest.fixture
def checkpoint(tmp_path):
    model, config = tiny_model()
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, model, {"model": config, "training": {"lr_size": 8}})
    return path


@pytest.mark.parametrize(
    ("shape", "tile"), [((80, 59, 28), 20), ((61, 45, 35), 24), ((70, 29, 21), 25), ((46, 38, 20), 130)]
)
@pytest.mark.parametrize("residual", [True, False])
def test_tiled_decoding_equals_the_untiled_model(shape, tile, residual):
    model, _ = tiny_model(residual=residual)
    rng = np.random.default_rng(0)
    lr = rng.random((40, 30, 14)).astype(np.float32)
    t1 = rng.random(lr.shape).astype(np.float32)
    with torch.no_grad():
        untiled = model(torch.from_numpy(lr)[None, None], torch.from_numpy(t1)[None, None], shape)[0, 0]
    owners = [np.floor(source_index(n, m) + 0.5) for n, m in zip(lr.shape, shape, strict=True)]
    assert (len(plan_tiles(owners, None, lr.shape, tile, encoder_halo(model))) > 1) == (tile < 130)
    out = resample(lr, shape).astype(np.float32)
    decode_volume(model, lr, t1, out, tile=tile, chunk=997)
    np.testing.assert_allclose(out, untiled.numpy(), rtol=1e-5, atol=2e-6)
    # Only the selected voxels are decoded; the others keep what ``out`` held.
    where = np.zeros(shape, bool)
    where[5:20, 10:30, 3:9] = True
    where[40:60:3, 2:20, 10:] = True
    partial = resample(lr, shape).astype(np.float32)
    decode_volume(model, lr, t1, partial, where, tile=tile)
    np.testing.assert_allclose(partial[where], untiled.numpy()[where], rtol=1e-5, atol=2e-6)
    np.testing.assert_array_equal(partial[~where], resample(lr, shape).astype(np.float32)[~where])


@pytest.mark.parametrize(
    ("shape", "tile", "halo"), [((128, 128, 82), 130, 17), ((145, 174, 145), 130, 17), ((40, 30, 14), 20, 9)]
)
def test_tiles_cover_the_brain_within_the_memory_bound(shape, tile, halo):
    """Cores partition the bounding box of the selected voxels' owners, every tile (core + halo,
    clipped) holds at most tile³ voxels, and a volume that fits in one tile gets one tile."""
    owners = [np.floor(source_index(n, 2 * n) + 0.5).astype(int) for n in shape]
    where = np.zeros([2 * n for n in shape], bool)
    lo, hi = [n // 2 for n in shape], [n + n // 2 for n in shape]  # the middle half of the HR grid
    where[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    cores = plan_tiles(owners, where, shape, tile, halo)
    covered = np.zeros(shape, int)
    for core in cores:
        covered[core] += 1
        size = [min(c.stop + halo, n) - max(c.start - halo, 0) for c, n in zip(core, shape, strict=True)]
        assert np.prod(size) <= tile**3
    box = tuple(slice(int(o[a]), int(o[b - 1]) + 1) for o, a, b in zip(owners, lo, hi, strict=True))
    assert (covered[box] == 1).all() and covered.sum() == covered[box].sum()
    fits = np.prod([min(b.stop + halo, n) - max(b.start - halo, 0) for b, n in zip(box, shape, strict=True)])
    assert (len(cores) == 1) == (fits <= tile**3)


def test_tiles_need_room_beside_the_halo():
    owners = [np.arange(10)] * 3
    with pytest.raises(InputError, match="twice the model's halo of 9"):
        plan_tiles(owners, None, (10, 10, 10), 18, 9)


def test_model_upsample_of_a_subject(small_cohort, checkpoint, tmp_path):
    subject = small_cohort / "phantom001"  # HCP layout: the T1w is found in the folder
    out, base = tmp_path / "sr.nii.gz", tmp_path / "tricubic.nii.gz"
    # A random model: the safeguard (tests/test_safeguard.py) would rightly give it no weight.
    model = ["--model", checkpoint, "--safeguard", "off"]
    result = run("upsample", subject, "--scale", "1.5", *model, "--out", out)
    assert result.exit_code == 0, result.output
    assert run("upsample", subject, "--scale", "1.5", "--model", "tricubic", "--out", base).exit_code == 0
    sr, tri = nib.load(out), nib.load(base)
    assert sr.shape == tri.shape and sr.shape[3] == 14
    np.testing.assert_allclose(sr.affine, tri.affine)
    source = subject / "T1w" / "Diffusion"
    bvals, bvecs = read_bvals_bvecs(str(source / "bvals"), str(source / "bvecs"))
    out_bvals, out_bvecs = read_bvals_bvecs(str(tmp_path / "sr.bval"), str(tmp_path / "sr.bvec"))
    np.testing.assert_allclose(out_bvals, bvals)
    np.testing.assert_allclose(out_bvecs, bvecs, atol=1e-6)
    sidecar = json.loads((tmp_path / "sr.json").read_text())
    assert (
        sidecar["model_config"]["residual"] is True
        and sidecar["model_volumes"] == np.flatnonzero(bvals > 50).tolist()
    )
    assert sidecar["t1w"].endswith("T1w_acpc_dc_restore_1.25.nii.gz")
    a, b = sr.get_fdata(dtype=np.float32), tri.get_fdata(dtype=np.float32)
    b0 = bvals <= 50
    np.testing.assert_allclose(a[..., b0], b[..., b0], rtol=1e-6)  # b0 volumes: tricubic
    changed = np.abs(a[..., ~b0] - b[..., ~b0]).max(axis=-1) > 1e-3
    assert 0.05 < changed.mean() < 0.6  # the model acts inside the brain only
    corner = (slice(0, 5),) * 3  # outside the head: tricubic
    np.testing.assert_allclose(a[corner], b[corner], rtol=1e-6)
    # Tiling does not change the result; --outside zero zeroes what lies outside the mask.
    tiled = tmp_path / "tiled.nii.gz"
    args = ["--scale", "1.5", *model, "--tile", "60", "--outside", "zero", "--out", tiled]
    assert run("upsample", subject, *args).exit_code == 0
    c = nib.load(tiled).get_fdata(dtype=np.float32)
    inside = (c != 0).any(axis=-1)  # the decoded region (outside it: zeros)
    np.testing.assert_allclose(c[inside], a[inside], rtol=1e-3, atol=1e-2)  # intensities ~10-1000
    assert inside[changed].mean() > 0.99  # where the model acted, its output is kept
    assert not inside[corner].any()  # outside the head: zeros


def test_a_model_that_adds_nothing_gives_the_tricubic_series(small_cohort, tmp_path):
    """The model's S/S0 correction is what reaches the output: a residual model with a zero
    head returns the tricubic upsampling of every volume, with no seam at the mask's edge."""
    model, config = tiny_model()
    torch.nn.init.zeros_(model.decoder.head.weight)
    torch.nn.init.zeros_(model.decoder.head.bias)
    save_checkpoint(tmp_path / "zero.safetensors", model, {"model": config})
    subject = small_cohort / "phantom001"
    outs = {name: tmp_path / f"{name}.nii.gz" for name in ("zero", "tricubic")}
    for name, out in outs.items():
        model_arg = tmp_path / "zero.safetensors" if name == "zero" else "tricubic"
        result = run("upsample", subject, "--scale", "1.5", "--model", model_arg, "--out", out)
        assert result.exit_code == 0, result.output
    zero, tri = (nib.load(out).get_fdata(dtype=np.float32) for out in outs.values())
    np.testing.assert_allclose(zero, tri, rtol=1e-5, atol=1e-3)  # intensities ~10-1000


def test_tricubic_upsample_preserves_units(small_cohort, tmp_path):
    subject = small_cohort / "phantom000"
    out = tmp_path / "sr.nii.gz"
    assert run("upsample", subject, "--scale", "2", "--model", "tricubic", "--out", out).exit_code == 0
    lr = nib.load(subject / "T1w" / "Diffusion" / "data.nii.gz").get_fdata(dtype=np.float32)
    hr = nib.load(out).get_fdata(dtype=np.float32)
    mask = brain_mask(lr[..., 0])
    mask_hr = resample(mask.astype(np.float32), hr.shape[:3], order=0) > 0.5
    for v in range(lr.shape[3]):
        assert hr[..., v][mask_hr].mean() == pytest.approx(lr[..., v][mask].mean(), rel=0.01)


def test_a_named_t1w_model_without_a_t1w_is_refused(small_dwi, checkpoint, tmp_path):
    out = tmp_path / "sr.nii.gz"
    result = run("upsample", small_dwi, "--scale", "2", "--model", checkpoint, "--out", out)
    assert_user_error(result, "uses a T1w", "--t1")
    named = run("upsample", small_dwi, "--scale", "2", "--model", "csr-dmri-cpu", "--out", out)
    assert_user_error(named, "csr-dmri-cpu uses a T1w")
    bad = run(
        "upsample", small_dwi, "--scale", "2", "--model", "tricubic", "--precision", "fp8", "--out", out
    )
    assert_user_error(bad, "precision must be one of", "--precision")
    assert not out.exists()


def series_and_t1w(folder, bvalue: float = 1000.0):
    """A 14×12×10×7 DWI (1 b0 + 6 directions at ``bvalue``) and a textured T1w on its grid."""
    bvals, bvecs = gradients(bvalue=bvalue)
    data = np.full((14, 12, 10, 7), 10.0, dtype=np.float32)
    data[3:11, 3:9, 2:8, 0], data[3:11, 3:9, 2:8, 1:] = 1000.0, 400.0
    dwi = write_dwi(folder / "in", data, oblique_affine(), bvals, bvecs)
    texture = np.random.default_rng(0).random(data.shape[:3], dtype=np.float32)
    nib.save(nib.Nifti1Image(data[..., 0] * (1 + texture), oblique_affine()), folder / "t1w.nii.gz")
    return dwi, folder / "t1w.nii.gz"


@pytest.mark.parametrize("lacks", ["t1w", "b1000", "directions"])
def test_the_default_gives_way_to_the_joint_model_where_it_cannot_run(lacks, tmp_path, caplog):
    """No T1w, no b = 1000 volume, new directions asked for: the joint model runs instead of the
    default, and the log, the message and the sidecar say why."""
    dwi, t1 = series_and_t1w(tmp_path, 2000.0 if lacks == "b1000" else 1000.0)
    args = ["--t1", t1] if lacks != "t1w" else []
    args += ["--out-directions", "8"] if lacks == "directions" else []
    out = tmp_path / "sr.nii.gz"
    with caplog.at_level(logging.WARNING):
        result = run("upsample", dwi, "--scale", "2", "--out", out, *args)
    assert result.exit_code == 0, result.output
    sidecar = json.loads(out.with_name("sr.json").read_text())
    why = {"t1w": "needs a T1w", "b1000": "models only b = 1000", "directions": "writes no new gradient"}[
        lacks
    ]
    assert sidecar["model"] == "csr-qspace-cpu" and "(csr-qspace-cpu" in result.output
    assert sidecar["model_choice"].startswith("instead of csr-dmri-cpu") and why in sidecar["model_choice"]
    assert why in caplog.text


def test_the_default_runs_where_it_can(tmp_path):
    dwi, t1 = series_and_t1w(tmp_path)
    assert upsample_dataset(dwi, tmp_path / "sr.nii.gz", scale=[2.0], t1=t1).model == "csr-dmri-cpu"
    assert json.loads((tmp_path / "sr.json").read_text())["model_choice"] == "default"


def test_shipped_model_on_a_real_scan_keeps_world_positions(tmp_path):
    """The Philips Ingenia pair (DWI 2 mm axial, T1w 1 mm sagittal), cropped around the brain
    centre to keep the test short: the shipped CSR-dMRI and joint q-space models at 2x put the
    signal's centre of mass at the same world position as the input's."""
    folder = real_scan("philips-ingenia-2mm")
    img = nib.load(folder / "dwi.nii.gz")
    crop = img.slicer[40:80, 40:80, 30:54]  # nibabel shifts the affine with the crop
    dwi = tmp_path / "crop" / "dwi.nii.gz"
    dwi.parent.mkdir()
    nib.save(crop, dwi)
    for suffix in (".bval", ".bvec"):
        (dwi.parent / f"dwi{suffix}").write_bytes((folder / f"dwi{suffix}").read_bytes())

    def centre_of_mass(image, volume):
        data = image.get_fdata(dtype=np.float32)[..., volume]
        index = np.stack(np.meshgrid(*map(np.arange, data.shape), indexing="ij"), -1)
        return nib.affines.apply_affine(image.affine, (index * data[..., None]).sum((0, 1, 2)) / data.sum())

    for model in ("csr-dmri-cpu", "csr-qspace-cpu", "csr-qspace-acquired-cpu"):
        out = tmp_path / f"{model}.nii.gz"
        result = run(
            "upsample", dwi, "--scale", "2", "--t1", folder / "t1w.nii.gz", "--model", model, "--out", out
        )
        assert result.exit_code == 0, result.output
        sr = nib.load(out)
        assert sr.shape == (80, 80, 48, 17)
        for volume in (0, 5):  # a b0 (tricubic) and a DWI (the model)
            shift = np.linalg.norm(centre_of_mass(sr, volume) - centre_of_mass(crop, volume))
            assert shift < 0.1, f"{model}, volume {volume}: centre of mass moved by {shift:.3f} mm"


def test_command_line_defaults_are_the_library_defaults():
    """The CLI spells its defaults out (so that --help starts without torch): they must agree."""
    import inspect

    from csrdmri.cli.dataset import upsample
    from csrdmri.inference.upsampler import Options

    parameters = inspect.signature(upsample).parameters
    for name in ("device", "precision", "tile", "chunk", "margin", "outside"):
        assert parameters[name].default == getattr(Options(), name), name


def test_cheap_checks_come_before_the_series_is_read(small_dwi, tmp_path):
    """An existing output, a named model without its T1w and an absurd output size are refused before
    any voxel is read: here the voxels cannot be read (the file is cut short), and each error
    names the real problem."""
    cut = tmp_path / "cut" / "dwi.nii.gz"
    cut.parent.mkdir()
    data = small_dwi.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    for suffix in (".bval", ".bvec"):
        cut.with_name("dwi" + suffix).write_bytes(small_dwi.with_name("dwi" + suffix).read_bytes())
    out = tmp_path / "out" / "sr.nii.gz"
    tricubic = ("--model", "tricubic", "--out", out)
    assert_user_error(run("upsample", cut, "--scale", "2", *tricubic), "corrupt or truncated")
    named = ("--model", "csr-dmri-cpu", "--out", out)
    assert_user_error(run("upsample", cut, "--scale", "2", *named), "uses a T1w", "--t1")
    assert_user_error(run("upsample", cut, "--scale", "400", *tricubic), "GB", "--max-output-gb")
    out.parent.mkdir()
    out.write_text("precious")
    assert_user_error(run("upsample", cut, "--scale", "2", *tricubic), "already exists", "--force")
    assert out.read_text() == "precious"
