"""The joint q-space model: SH fits, whole-shell inference, training on simulated acquisitions."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import gradients, oblique_affine, write_dwi
from dipy.core.gradients import gradient_table
from dipy.core.sphere import Sphere
from dipy.reconst.shm import sf_to_sh, sh_to_sf

from csrdmri.core.grid import TargetGrid, dst_grid_normalized
from csrdmri.dmri.scan import PreparedScan
from csrdmri.dmri.sh import order_for, sh_matrices
from csrdmri.inference.series import new_output, upsample_series
from csrdmri.inference.tiling import predict_tiles
from csrdmri.inference.upsampler import Options, Upsampler
from csrdmri.io.layout import find_dataset
from csrdmri.io.nifti import load_dwi
from csrdmri.models import build_model
from csrdmri.models.checkpoint import save_checkpoint
from csrdmri.models.qspace import shell_input

TINY_QSPACE = {
    "architecture": "qspace",
    "latent": 8,
    "g0": 8,
    "growth": 8,
    "blocks": 2,
    "layers": 2,
    "width": 16,
    "depth": 3,
    "skip_at": 1,
}


def multishell(tmp_path, shells=((1000.0, 8), (2000.0, 15), (3000.0, 5)), seed=0):
    """A 12×11×9 oblique series: 2 b0s, then the given shells (b, directions) interleaved."""
    rng = np.random.default_rng(seed)
    bvals, bvecs = [np.zeros(2)], [np.zeros((2, 3))]
    for i, (b, n) in enumerate(shells):
        bv, vec = gradients(0, n, b, seed=seed + i)
        bvals.append(bv)
        bvecs.append(vec)
    bvals, bvecs = np.concatenate(bvals), np.concatenate(bvecs)
    order = np.r_[0, rng.permutation(np.arange(1, len(bvals)))]  # volumes of shells interleaved
    bvals, bvecs = bvals[order], bvecs[order]
    shape = (12, 11, 9)
    base = 600 + 400 * rng.random(shape)
    fibre = rng.normal(size=(*shape, 3))
    fibre /= np.linalg.norm(fibre, axis=-1, keepdims=True)
    cos2 = np.einsum("xyzc,vc->xyzv", fibre, bvecs) ** 2
    data = base[..., None] * np.exp(-bvals * 1e-3 * (0.3 + 1.2 * cos2))
    data += rng.normal(0, 5, data.shape)
    path = write_dwi(tmp_path / "in", np.maximum(data, 0).astype(np.float32), oblique_affine(), bvals, bvecs)
    return load_dwi(find_dataset(path))


def joint_upsampler(tmp_path, zero: bool, seed: int = 0) -> Upsampler:
    torch.manual_seed(seed)
    model = build_model(TINY_QSPACE)
    if not zero:
        torch.nn.init.normal_(model.decoder.head.weight, std=0.02)
    path = tmp_path / ("zero.safetensors" if zero else "random.safetensors")
    save_checkpoint(path, model, {"model": TINY_QSPACE})
    return Upsampler.load(str(path))


def run_series(series, up, scale=2.0):
    grid = TargetGrid.over((*series.shape, series.data.shape[3]), series.affine, scale=(scale,) * 3)
    scan = PreparedScan.prepare(series, shell=None) if up.model is not None else None
    out = new_output((*grid.shape, series.data.shape[3]))
    upsample_series(series, grid, up, out, scan, Options(safeguard="off"))  # the model's own output
    return out


def test_sh_fit_and_synthesis_equal_dipys():
    rng = np.random.default_rng(1)
    directions = rng.normal(size=(20, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    signal = rng.random((7, 20))
    fit, basis = sh_matrices(directions, 4)
    sphere = Sphere(xyz=directions)
    ours = signal @ fit
    theirs = sf_to_sh(signal, sphere, sh_order_max=4, basis_type="descoteaux07", legacy=False, smooth=0.006)
    np.testing.assert_allclose(ours[:, :15], theirs, atol=1e-10)
    assert not ours[:, 15:].any()
    synth = sh_to_sf(theirs, sphere, sh_order_max=4, basis_type="descoteaux07", legacy=False)
    np.testing.assert_allclose(ours @ basis.T, synth, atol=1e-10)
    assert [order_for(n) for n in (6, 14, 15, 27, 28, 90)] == [2, 2, 4, 4, 6, 6]


def test_zero_correction_is_cubic_for_every_shell(tmp_path, caplog):
    series = multishell(tmp_path)
    with caplog.at_level(logging.WARNING):
        joint = run_series(series, joint_upsampler(tmp_path, zero=True))
    cubic = run_series(series, Upsampler.load("tricubic"))
    np.testing.assert_allclose(joint, cubic, atol=1e-4)
    assert any("b = 3000" in r.getMessage() and "5 direction" in r.getMessage() for r in caplog.records)


def test_five_direction_shell_stays_cubic_and_the_others_change(tmp_path):
    series = multishell(tmp_path)
    joint = run_series(series, joint_upsampler(tmp_path, zero=False))
    cubic = run_series(series, Upsampler.load("tricubic"))
    bvals = series.gtab.bvals
    for b, changed in ((0, False), (1000, True), (2000, True), (3000, False)):
        volumes = np.flatnonzero(np.abs(bvals - b) < 50)
        differs = np.abs(joint[..., volumes] - cubic[..., volumes]).max() > 1e-3
        assert differs == changed, b


def test_permuting_the_volumes_permutes_the_output(tmp_path):
    series = multishell(tmp_path, shells=((1000.0, 10), (2500.0, 16)))
    up = joint_upsampler(tmp_path, zero=False)
    order = np.r_[0, 1, np.random.default_rng(3).permutation(np.arange(2, series.data.shape[3]))]
    gtab = gradient_table(series.gtab.bvals[order], bvecs=series.gtab.bvecs[order])
    permuted = replace(series, data=series.data[..., order], gtab=gtab)
    np.testing.assert_allclose(run_series(permuted, up), run_series(series, up)[..., order], atol=1e-4)


def test_tiles_decode_what_the_untiled_model_decodes():
    torch.manual_seed(0)
    model = build_model(TINY_QSPACE).eval()
    torch.nn.init.normal_(model.decoder.head.weight, std=0.1)
    rng = np.random.default_rng(0)
    inputs = shell_input(rng.random((28, 16, 15, 14)).astype(np.float32), 1500.0, 4)
    t1 = rng.random((16, 15, 14)).astype(np.float32)
    shape = (32, 30, 28)
    whole = np.zeros((*shape, 28), np.float32)
    tiled = np.zeros_like(whole)
    for out, tile in ((whole, 200), (tiled, 24)):
        for box, selected, values in predict_tiles(model, inputs, t1, shape, tile=tile):
            out[box][selected] = values
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    with torch.no_grad():
        coords = torch.from_numpy(dst_grid_normalized(shape)).reshape(1, -1, 3)
        t = lambda a: torch.from_numpy(a)[None] if a.ndim == 4 else torch.from_numpy(a)[None, None]  # noqa: E731
        direct = model.decode(model.encode(t(inputs), t(t1)), coords)[0].reshape(*shape, 28).numpy()
    np.testing.assert_allclose(whole, direct, atol=1e-5)


def test_noise_ceiling_is_the_psnr_of_the_noise(tmp_path):
    from csrdmri.evaluation.volume_protocol import noise_ceiling

    clean = multishell(tmp_path)
    noisy = replace(clean, data=clean.data + np.random.default_rng(0).normal(0, 10.0, clean.data.shape))
    mask = np.ones(clean.shape, bool)
    assert noise_ceiling(noisy, clean.data, mask, 1000.0) == pytest.approx(40.0, abs=0.1)  # 20·log10(1000/10)
    assert noise_ceiling(noisy, None, mask, 1000.0) is None


def test_the_consistent_ceiling_is_nearer_the_noisy_truth_than_the_signal(tmp_path):
    from csrdmri.dmri.degraded import degrade_series
    from csrdmri.dmri.dti import dti_errors, tensor_maps
    from csrdmri.evaluation.volume_protocol import consistent_ceiling, noise_ceiling

    clean = multishell(tmp_path)
    noisy = replace(clean, data=clean.data + np.random.default_rng(0).normal(0, 10.0, clean.data.shape))
    mask = np.ones(clean.shape, bool)
    truth_maps = tensor_maps(noisy.data, noisy.gtab, mask)
    signal_fa = dti_errors(truth_maps, tensor_maps(clean.data, clean.gtab, mask))["fa_mae_brain"]
    for operator in ("tricubic", "kspace"):
        lr, _ = degrade_series(noisy, 2.0, operator)
        oracle, dti = consistent_ceiling(noisy, clean.data, lr, operator, truth_maps, 1000.0)
        # the input holds an eighth of the samples: about that share of the noise is put back
        assert 40.3 < oracle < 41.0 and oracle > noise_ceiling(noisy, clean.data, mask, 1000.0)
        assert dti["fa_mae_brain"] < signal_fa  # and with it, a share of the noise's FA bias
        assert consistent_ceiling(noisy, None, lr, operator, truth_maps, 1000.0) == (None, None)


def test_angular_output_at_the_acquired_directions_is_the_normal_output(tmp_path):
    from csrdmri.inference.plan import OutputPlan

    series = multishell(tmp_path, shells=((1000.0, 8), (2000.0, 15)))
    up = joint_upsampler(tmp_path, zero=False)
    normal = run_series(series, up)
    weighted = ~series.gtab.b0s_mask
    plan = OutputPlan.build(series.gtab, -series.gtab.bvecs[weighted])  # ±g: the same direction
    grid = TargetGrid.over((*series.shape, 1), series.affine, scale=(2.0,) * 3)
    out = new_output((*grid.shape, len(plan.weights)))
    scan = PreparedScan.prepare(series, shell=None)
    upsample_series(series, grid, up, out, scan, Options(safeguard="off"), plan=plan)
    assert (
        len(plan.weights) == (~weighted).sum() + 2 * weighted.sum()
    )  # the b0s, then 23 directions per shell
    for inputs, outputs in plan.shells.values():
        acquired = np.flatnonzero(weighted)
        matching = outputs[np.searchsorted(acquired, inputs)]
        np.testing.assert_allclose(out[..., matching], normal[..., inputs], atol=1e-4)
    new = np.setdiff1d(
        plan.shells[1000][1],
        plan.shells[1000][1][np.searchsorted(np.flatnonzero(weighted), plan.shells[1000][0])],
    )
    assert np.abs(out[..., new]).max() > 0  # the other shell's directions, made at b = 1000


def test_upsample_writes_new_directions_with_their_b_table(small_dwi, tmp_path):
    from conftest import assert_user_error, run

    out = tmp_path / "out" / "sr.nii.gz"
    result = run(
        "upsample", small_dwi, "--out", out, "--scale", "2", "--model", "tricubic", "--out-directions", "10"
    )
    assert result.exit_code == 0, result.output
    bvals = np.loadtxt(out.with_name("sr.bval"))
    bvecs = np.loadtxt(out.with_name("sr.bvec"))
    assert bvals.tolist() == [0.0] + [1000.0] * 10 and bvecs.shape == (3, 11)
    assert np.allclose(np.linalg.norm(bvecs[:, 1:], axis=0), 1.0)
    assert "10 at b = 1000" in out.with_name("sr.json").read_text()
    result = run(
        "upsample",
        small_dwi,
        "--out",
        tmp_path / "b.nii.gz",
        "--scale",
        "2",
        "--model",
        "arssr-cpu",
        "--out-directions",
        "10",
    )
    assert_user_error(result, "joint q-space model", "--out-directions")
    result = run(
        "upsample",
        small_dwi,
        "--out",
        tmp_path / "c.nii.gz",
        "--scale",
        "2",
        "--model",
        "tricubic",
        "--out-directions",
        "4",
    )
    assert_user_error(result, "at least 6", "--out-directions")


def test_multishell_phantom_scheme():
    from csrdmri.phantom.params import PhantomParams
    from csrdmri.phantom.signal import gradient_scheme

    params = PhantomParams(n_dirs=12, n_b0=3, bvalue=(1000.0, 2000.0, 3000.0))
    gtab = gradient_scheme(params.n_dirs, params.n_b0, params.bvalue)
    assert gtab.b0s_mask.sum() == 3 and gtab.b0s_mask[0]
    for b in params.bvalues:
        directions = gtab.bvecs[gtab.bvals == b]
        assert len(directions) == 12 and np.allclose(np.linalg.norm(directions, axis=1), 1.0)
    single = gradient_scheme(12, 3, 1000.0)
    assert np.array_equal(single.bvecs[~single.b0s_mask], gtab.bvecs[gtab.bvals == 1000])


def test_evaluating_on_a_phantom_subject_it_was_trained_on_is_refused(tmp_path):
    import json

    from csrdmri.core.errors import InputError
    from csrdmri.evaluation.patch_protocol import Method, refuse_seen_phantom

    trained = Upsampler("run", meta={"training": {"steps": 10, "seed": 0, "subjects": 4}})
    methods = {"tricubic": Method(), "qspace": Method((trained,))}
    for seed in (0, 3):
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        names = [f"phantom{i:03d}" for i in range(6)]
        (folder / "cohort.json").write_text(json.dumps({"seed": seed, "subjects": names}))
        for name in names:
            seen = seed == 0 and name <= "phantom004"  # 4 training subjects + 1 validating
            if seen:
                with pytest.raises(InputError, match="trained or validated qspace"):
                    refuse_seen_phantom(folder, name, methods)
            else:
                refuse_seen_phantom(folder, name, methods)


def test_a_multishell_series_keeps_its_volume_order_and_b_table(tmp_path):
    from conftest import run

    series = multishell(tmp_path)
    up = joint_upsampler(tmp_path, zero=False)
    out = tmp_path / "out" / "sr.nii.gz"
    arguments = ["--scale", "2", "--model", up.checkpoint, "--safeguard", "off"]
    result = run("upsample", series.paths.dwi, "--out", out, *arguments)
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.loadtxt(out.with_name("sr.bval")), series.gtab.bvals)
    np.testing.assert_allclose(np.loadtxt(out.with_name("sr.bvec")).T, series.gtab.bvecs, atol=1e-6)
    written = np.asarray(nib.load(out).dataobj)
    np.testing.assert_allclose(written, run_series(series, up), atol=1e-3)
    sidecar = json.loads(out.with_name("sr.json").read_text())
    assert sidecar["directions"] == "acquired"
    modelled = np.flatnonzero((np.abs(series.gtab.bvals - 3000) > 50) & ~series.gtab.b0s_mask)
    assert sidecar["model_volumes"] == modelled.tolist()  # the 5-direction shell stays cubic


def test_fa_of_the_tensor_term_equals_dipys():
    from dipy.reconst.dti import TensorModel
    from dipy.sims.voxel import multi_tensor

    from csrdmri.dmri.sh import sphere_directions
    from csrdmri.training.tensor_loss import fractional_anisotropy, tensor_pinv

    directions, rng = sphere_directions(20), np.random.default_rng(1)
    gtab = gradient_table(np.r_[0.0, np.full(20, 1500.0)], bvecs=np.r_[[[1.0, 0, 0]], directions])
    signals = []
    for _ in range(12):
        evals = np.sort(rng.uniform(2e-4, 2e-3, (1, 3)))[:, ::-1]
        angles = [tuple(rng.uniform(0, 90, 2))]
        signals.append(multi_tensor(gtab, evals, S0=300, angles=angles, fractions=[100], snr=None)[0])
    signals = np.array(signals)
    expected = TensorModel(gtab, fit_method="LS").fit(signals).fa
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    fa = fractional_anisotropy(t(signals[:, 1:]), t(signals[:, 0]), t(tensor_pinv(1500.0, directions)))
    np.testing.assert_allclose(fa.numpy(), expected, atol=1e-5)


def test_shell_coefficients_do_not_depend_on_the_memory_order(tmp_path):
    """A NIfTI file's volumes are Fortran-ordered (nibabel), most arrays made in code C-ordered."""
    from csrdmri.dmri.sh import sh_matrices, unit_directions
    from csrdmri.inference.joint import shell_coefficients

    series = multishell(tmp_path, shells=((1000.0, 8),))
    volumes = np.flatnonzero(~series.gtab.b0s_mask)
    fit, _ = sh_matrices(unit_directions(series.gtab.bvecs[volumes]), 2)
    scan = PreparedScan.prepare(series, shell=None)
    reciprocal = scan.reciprocal()
    expected = np.einsum("xyzk,kc->cxyz", series.data[..., volumes] * reciprocal[..., None], fit)
    fortran = PreparedScan.prepare(replace(series, data=np.asfortranarray(series.data)), shell=None)
    for prepared, factor in ((scan, reciprocal), (fortran, np.asfortranarray(reciprocal))):
        got = shell_coefficients(prepared, volumes, fit, factor)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
