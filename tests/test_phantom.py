"""The phantom cohort: layout the I/O layer reads, determinism, split, resumption, physics."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import SMALL_PHANTOM
from dipy.reconst.dti import TensorModel
from typer.testing import CliRunner

from csrdmri.cli import app
from csrdmri.core.errors import InputError
from csrdmri.dmri.preprocess import series_mask, shell_indices, t1_on_dwi_grid
from csrdmri.io.layout import find_dataset
from csrdmri.io.nifti import load_dwi
from csrdmri.phantom import PhantomParams, generate_cohort, generate_subject
from csrdmri.phantom.cohort import SUBJECT_FILES, split_subjects

SMALL = SMALL_PHANTOM


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cohort(small_cohort):
    return small_cohort


def test_cohort_loads_through_the_hcp_layout(cohort):
    manifest = json.loads((cohort / "cohort.json").read_text())
    assert (
        manifest["complete"]
        and manifest["seed"] == 7
        and manifest["subjects"] == ["phantom000", "phantom001"]
    )
    assert manifest["parameters"]["voxel_size"] == 2.5
    for name in manifest["subjects"]:
        paths = find_dataset(cohort / name)
        assert paths.layout == "hcp" and paths.t1 is not None and paths.mask is not None
        series = load_dwi(paths)
        assert series.data.shape == (72, 87, 72, 14)
        np.testing.assert_allclose(series.zooms, [2.5, 2.5, 2.5])
        assert len(shell_indices(series.gtab)) == 12 and series.gtab.b0s_mask.sum() == 2
        mask = series_mask(series)  # the cohort's own nodif_brain_mask
        assert 0.15 < mask.mean() < 0.5
        t1 = t1_on_dwi_grid(paths.t1, series, mask)
        # b0: CSF brighter than WM; T1w: WM brighter than CSF (the contrasts a real pair has).
        b0 = series.data[..., series.gtab.b0s_mask].mean(-1)
        assert np.corrcoef(t1[mask], b0[mask])[0, 1] < -0.3


def test_same_seed_same_bytes_and_subjects_differ(cohort, tmp_path):
    generate_cohort(tmp_path, 1, seed=7, params=SMALL)
    for rel in SUBJECT_FILES:
        assert _digest(tmp_path / "phantom000" / rel) == _digest(cohort / "phantom000" / rel), rel
    a = load_dwi(find_dataset(cohort / "phantom000")).data
    b = load_dwi(find_dataset(cohort / "phantom001")).data
    head = (a != 0) | (b != 0)
    assert np.mean(a[head] != b[head]) > 0.9
    mask_a, mask_b = (series_mask(load_dwi(find_dataset(cohort / n))) for n in ("phantom000", "phantom001"))
    assert np.sum(mask_a ^ mask_b) > 0.05 * mask_a.sum()  # different anatomy, not only other noise
    other_seed = generate_subject(0, 8, SMALL)
    assert not np.array_equal(other_seed.anatomy.mask, generate_subject(0, 7, SMALL).anatomy.mask)


@pytest.mark.parametrize(
    ("n", "sizes"), [(100, (70, 10, 20)), (20, (14, 2, 4)), (10, (7, 1, 2)), (2, (1, 0, 1))]
)
def test_split_is_disjoint_and_70_10_20(n, sizes):
    names = [f"s{i}" for i in range(n)]
    split = split_subjects(names, seed=3)
    assert tuple(len(split[k]) for k in ("train", "validation", "test")) == sizes
    assert sorted(split["train"] + split["validation"] + split["test"]) == sorted(names)
    assert split == split_subjects(names, seed=3)
    if n >= 10:
        assert split != split_subjects(names, seed=4)


def test_interrupted_cohort_resumes_to_the_same_files(cohort, tmp_path):
    def interrupt(name):
        if name == "phantom000":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_cohort(tmp_path, 2, seed=7, params=SMALL, progress=interrupt)
    assert not json.loads((tmp_path / "cohort.json").read_text())["complete"]
    assert not (tmp_path / "phantom001").exists()
    # Started by a version without the parameters added since: they are at their defaults there.
    manifest = json.loads((tmp_path / "cohort.json").read_text())
    for key in ("orientation_sd", "orientation_mm", "gm_anisotropy"):
        del manifest["parameters"][key]
    (tmp_path / "cohort.json").write_text(json.dumps(manifest))
    generate_cohort(tmp_path, 2, seed=7, params=SMALL)
    for name in ("phantom000", "phantom001"):
        for rel in SUBJECT_FILES:
            assert _digest(tmp_path / name / rel) == _digest(cohort / name / rel)
    stamp = (tmp_path / "phantom001" / SUBJECT_FILES[0]).stat().st_mtime_ns
    assert generate_cohort(tmp_path, 2, seed=7, params=SMALL)["complete"]  # complete: nothing to do
    assert (tmp_path / "phantom001" / SUBJECT_FILES[0]).stat().st_mtime_ns == stamp
    with pytest.raises(InputError, match="already holds another cohort"):
        generate_cohort(tmp_path, 2, seed=8, params=SMALL)


def test_physics_dti_recovers_the_simulated_tissue():
    """DIPY's DTI fit: FA > 0.5 and the intended direction within 15° in coherent WM; MD ≈ 3e-3 in CSF."""
    subject = generate_subject(0, 11, PhantomParams(voxel_size=2.5, n_dirs=30, n_b0=3))
    anatomy, fibres = subject.anatomy, subject.fibres
    wm = (anatomy.wm[anatomy.mask] > 0.9) & fibres.coherent
    csf = anatomy.csf[anatomy.mask] > 0.9
    assert wm.sum() > 1000 and csf.sum() > 200
    data = subject.dwi[anatomy.mask].astype(np.float32)
    model = TensorModel(subject.gtab)
    fit_wm, fit_csf = model.fit(data[wm]), model.fit(data[csf])
    assert np.mean(fit_wm.fa > 0.5) > 0.95
    cosine = np.abs(np.sum(fit_wm.evecs[..., 0] * fibres.frame[wm][:, :, 0], axis=-1))
    assert np.mean(np.degrees(np.arccos(np.clip(cosine, 0, 1))) < 15) > 0.95
    assert abs(np.median(fit_csf.md) - 3e-3) < 0.3e-3


def test_cli_phantom_and_its_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["phantom", "--out", str(tmp_path / "c"), "--subjects", "0"])
    assert result.exit_code == 2 and "at least 1 subject" in result.stderr
    result = runner.invoke(app, ["phantom", "--out", str(tmp_path / "c"), "--directions", "3"])
    assert result.exit_code == 2 and "at least 6 directions" in result.stderr
    result = runner.invoke(app, ["phantom", "--out", str(tmp_path / "c"), "--texture-sd", "-1"])
    assert result.exit_code == 2 and "texture_sd must be a non-negative number" in result.stderr
    assert not (tmp_path / "c").exists()


def test_cli_phantom_without_texture(tmp_path):
    out = tmp_path / "c"
    small = ["--subjects", "1", "--voxel-size", "6", "--directions", "6", "--b0s", "1"]
    result = CliRunner().invoke(app, ["phantom", "--out", str(out), *small, "--texture-sd", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "cohort.json").read_text())["parameters"]["texture_sd"] == 0.0


@pytest.mark.parametrize("gm_anisotropy", [1.0, 1.6])
def test_vectorised_signal_equals_dipy_multi_tensor(gm_anisotropy):
    """The phantom's per-voxel sum of compartments is DIPY's multi-compartment simulation."""
    from dipy.sims.voxel import multi_tensor

    from csrdmri.phantom.signal import brain_signal, gm_diffusivities, gradient_scheme

    params = PhantomParams(n_dirs=20, n_b0=2, gm_anisotropy=gm_anisotropy)
    gtab = gradient_scheme(params.n_dirs, params.n_b0, params.bvalue)
    rng = np.random.default_rng(0)
    n = 6
    frame = np.linalg.qr(rng.normal(size=(n, 3, 3)))[0].astype(np.float32)
    fractions = rng.dirichlet([2, 2, 1], size=n)
    tissue = {
        "wm": fractions[:, 0],
        "gm": fractions[:, 1],
        "csf": fractions[:, 2],
        "bias": rng.uniform(0.8, 1.2, n),
        "dscale": rng.uniform(0.7, 1.4, n),
        "frame": frame,
        "f2": np.array([0.0, 0.4, 0.4, 0.0, 0.4, 0.0]),
        "gm_axis": frame[:, :, 2],
    }
    ours = brain_signal(tissue, params, gtab, slice(0, n))
    for i in range(n):
        wm, gm, csf, bias, ds, f2 = (tissue[k][i] for k in ("wm", "gm", "csf", "bias", "dscale", "f2"))
        weights = (
            np.array([wm * (1 - f2), wm * f2, gm * params.s0_gm_ratio, csf * params.s0_csf_ratio])
            * params.s0_wm
        )
        angles = []
        for col in (0, 1, 2, 0):
            x, y, z = frame[i][:, col]
            angles.append((np.degrees(np.arccos(z)), np.degrees(np.arctan2(y, x))))
        wm_evals = np.array([params.wm_axial, params.wm_radial, params.wm_radial]) * ds
        axial, radial = gm_diffusivities(params)
        assert (axial + 2 * radial) / 3 == pytest.approx(params.gm_md) and axial / radial == pytest.approx(
            gm_anisotropy
        )
        mevals = np.array([wm_evals, wm_evals, np.array([axial, radial, radial]) * ds, [params.csf_md] * 3])
        expected, _ = multi_tensor(
            gtab,
            mevals,
            S0=bias * weights.sum(),
            angles=angles,
            fractions=100 * weights / weights.sum(),
            snr=None,
        )
        np.testing.assert_allclose(ours[i], expected, rtol=1e-5)


def test_fibres_turned_by_a_smooth_rotation_of_the_asked_angle():
    """``orientation_sd`` turns every fibre frame (orthonormal still) by a rotation whose r.m.s.
    angle over the brain is the one asked, and leaves every other draw of the seed as it was."""
    from csrdmri.phantom.cohort import draw_subject

    base = PhantomParams(voxel_size=5.0)
    plain, turned = (draw_subject(0, 3, replace(base, orientation_sd=a)) for a in (0.0, 20.0))
    np.testing.assert_array_equal(plain.dwi_bias, turned.dwi_bias)
    np.testing.assert_array_equal(plain.dscale, turned.dscale)
    rotations = turned.fibres.frame @ np.swapaxes(plain.fibres.frame, 1, 2)
    np.testing.assert_allclose(
        rotations @ np.swapaxes(rotations, 1, 2), np.broadcast_to(np.eye(3), rotations.shape), atol=1e-5
    )
    angles = np.degrees(np.arccos(np.clip((np.trace(rotations, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert np.sqrt(np.mean(angles**2)) == pytest.approx(20.0, rel=0.05)
    assert 5 < np.median(angles) < 30


def test_anisotropic_grey_matter_along_the_cortical_normal():
    """With ``gm_anisotropy`` r, a DTI fit of pure grey matter (noise-free) finds FA (r − 1)/√(r² + 2)
    and its principal direction along the cortical normal; without, grey matter is isotropic."""
    from csrdmri.phantom.cohort import draw_subject
    from csrdmri.phantom.signal import gradient_scheme, simulate_dwi

    params = PhantomParams(voxel_size=5.0, n_dirs=30, n_b0=2, bias_sd=0.0, texture_sd=0.0)
    gtab = gradient_scheme(params.n_dirs, params.n_b0, params.bvalue)
    for ratio in (1.0, 1.6):
        ratioed = replace(params, gm_anisotropy=ratio)
        draw = draw_subject(0, 3, ratioed)
        mask = draw.anatomy.mask
        grey = draw.anatomy.gm[mask] > 0.95
        assert grey.sum() > 50
        dwi = simulate_dwi(
            draw.tissue(), mask, replace(params, gm_anisotropy=ratio), draw.generator, noise=False
        )
        fit = TensorModel(gtab).fit(dwi[mask][grey].astype(np.float64))
        expected = (ratio - 1) / np.sqrt(ratio**2 + 2)
        assert np.median(fit.fa) == pytest.approx(expected, abs=0.03)
        if ratio > 1:
            cosine = np.abs(np.sum(fit.evecs[..., 0] * draw.gm_axis[grey], axis=-1))
            assert np.median(cosine) > 0.99
        else:
            assert draw.gm_axis is None
