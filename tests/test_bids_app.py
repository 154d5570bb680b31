"""The BIDS App (``csrdmri bids``): discovery, derivative names and sidecars, reruns, failures,
participant selection, Dask, and outputs that DIPY and MRtrix read."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import gradients, oblique_affine, write_dwi
from dipy.core.gradients import gradient_table
from dipy.io import read_bvals_bvecs
from typer.testing import CliRunner

from csrdmri.cli import app
from csrdmri.cohort.derivatives import mrtrix_table, resolution_label
from csrdmri.cohort.discover import find_jobs

SERIES = {  # relative DWI path -> T1w beside it in anat/ (None: none)
    "sub-01/dwi/sub-01_dwi": "sub-01/anat/sub-01_T1w",
    "sub-02/ses-a/dwi/sub-02_ses-a_acq-hi_run-1_dwi": None,
    "sub-02/ses-b/dwi/sub-02_ses-b_dwi": None,
    "sub-03/dwi/sub-03_dwi": None,  # broken: one b-vector too many
}


def series_data(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bvals, bvecs = gradients(1, 10, seed=seed)
    shape = (12, 11, 9)
    base = 600 + 400 * rng.random(shape)
    cos2 = np.einsum("xyzc,vc->xyzv", rng.normal(size=(*shape, 3)) ** 2, bvecs**2)
    return np.maximum(base[..., None] * np.exp(-bvals * 1e-3 * (0.3 + 0.5 * cos2)), 0).astype(np.float32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bids")
    (root / "dataset_description.json").write_text(json.dumps({"Name": "test", "BIDSVersion": "1.9.0"}))
    affine = oblique_affine()
    for i, (dwi, t1) in enumerate(SERIES.items()):
        path = root / dwi
        bvals, bvecs = gradients(1, 10, seed=i)
        write_dwi(path.parent, series_data(i), affine, bvals, bvecs, stem=path.name)
        if t1:
            (root / t1).parent.mkdir(parents=True)
            volume = np.random.default_rng(i).random((24, 22, 18)).astype(np.float32) + 0.5
            nib.save(nib.Nifti1Image(volume, affine @ np.diag([0.5, 0.5, 0.5, 1])), root / f"{t1}.nii.gz")
    broken = root / "sub-03/dwi/sub-03_dwi.bvec"
    broken.write_text(broken.read_text().replace("\n", " 0\n"))
    return root


def run(*args: str):
    return CliRunner().invoke(app, ["bids", *map(str, args)])


def test_finds_every_series_with_its_t1w(dataset):
    jobs = find_jobs(dataset)
    assert [j.name for j in jobs] == ["sub-01", "sub-02_ses-a_acq-hi_run-1", "sub-02_ses-b", "sub-03"]
    assert jobs[0].t1.name == "sub-01_T1w.nii.gz" and jobs[1].t1 is None
    assert [j.name for j in find_jobs(dataset, ["sub-02"])] == ["sub-02_ses-a_acq-hi_run-1", "sub-02_ses-b"]
    assert resolution_label((1.25, 1.25, 1.25)) == "1p25mm" and resolution_label((1, 1, 2)) == "1x1x2mm"


def test_a_bids_run_writes_derivatives_reports_failures_and_skips_on_rerun(dataset, tmp_path):
    out = tmp_path / "derivatives" / "csrdmri"
    first = run(dataset, out, "participant", "--scale", "2", "--mrtrix-grad")
    assert first.exit_code == 1, first.output  # sub-03 failed, the others were written
    assert "sub-03" in first.output and "b-vectors but the DWI has 11 volumes" in first.output
    assert "3 done, 0 skipped, 1 failed of 4 series" in first.output
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "csrdmri"
    assert "command: csrdmri" in description["GeneratedBy"][0]["Description"]
    assert "logs/" in (out / ".bidsignore").read_text()  # (pytest's argv here)
    zooms = nib.load(dataset / "sub-01/dwi/sub-01_dwi.nii.gz").header.get_zooms()[:3]
    label = resolution_label([z / 2 for z in zooms])
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*_dwi.nii.gz"))
    assert written == [
        f"sub-01/dwi/sub-01_space-dwi_res-{label}_desc-csrdmri_dwi.nii.gz",
        f"sub-02/ses-a/dwi/sub-02_ses-a_acq-hi_run-1_space-dwi_res-{label}_desc-csrdmri_dwi.nii.gz",
        f"sub-02/ses-b/dwi/sub-02_ses-b_space-dwi_res-{label}_desc-csrdmri_dwi.nii.gz",
    ]
    sidecars = {p.name.split("_space")[0]: json.loads(p.read_text()) for p in out.rglob("*_dwi.json")}
    assert sidecars["sub-01"]["model"] == "csr-dmri-cpu" and sidecars["sub-01"]["t1w"].endswith(
        "sub-01_T1w.nii.gz"
    )
    assert sidecars["sub-02_ses-b"]["model"] == "csr-qspace-cpu" and sidecars["sub-02_ses-b"]["t1w"] is None
    assert sidecars["sub-01"]["model_choice"] == "default"
    assert "instead of csr-dmri-cpu, which needs a T1w" in sidecars["sub-02_ses-b"]["model_choice"]
    assert sidecars["sub-02_ses-b"]["Sources"] == ["bids::sub-02/ses-b/dwi/sub-02_ses-b_dwi.nii.gz"]
    assert label in sidecars["sub-01"]["Resolution"]
    for image in out.rglob("*_dwi.nii.gz"):  # DIPY and MRtrix read what was written
        bvals, bvecs = read_bvals_bvecs(
            str(image).replace(".nii.gz", ".bval"), str(image).replace(".nii.gz", ".bvec")
        )
        gtab = gradient_table(bvals, bvecs=bvecs)
        assert nib.load(image).shape[3] == len(gtab.bvals) == 11
        table = np.loadtxt(str(image).replace(".nii.gz", ".b"))
        np.testing.assert_allclose(table[:, 3], bvals)
    assert (out / "logs" / "sub-03.log").read_text().count("failed") >= 1
    page = (out / "sub-02.html").read_text()  # the participant's report: both sessions, figures inside
    assert page.count("<h2>") == 2 and page.count("data:image/png;base64,") >= 4 and "http" not in page
    assert "T1w alignment" in (out / "sub-01.html").read_text() and "T1w alignment" not in page
    assert "No series was written" in (out / "sub-03.html").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*_dwi.nii.gz")}
    again = run(dataset, out, "participant", "--scale", "2", "--participant-label", "01", "sub-02")
    assert again.exit_code == 0, again.output
    assert "0 done, 3 skipped, 0 failed of 3 series" in again.output
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("*_dwi.nii.gz")}
    untouched = sorted(p.name for p in dataset.rglob("*") if p.is_file())
    assert not any("csrdmri" in name for name in untouched)


def test_two_dask_workers_write_what_one_process_writes(dataset, tmp_path):
    """The joint model (the fallback without a T1w) on sub-02's two sessions; the sequential run
    gets the workers' one thread each. Equal to float rounding: on some CPUs (an AMD EPYC) the
    bytes differ in the last bit between a worker process and the main one."""
    args = ["participant", "--scale", "2", "--participant_label", "02", "--model", "csr-qspace-cpu"]
    assert run(dataset, tmp_path / "one", *args, "--threads", "1").exit_code == 0
    result = run(dataset, tmp_path / "two", *args, "--workers", "2", "--threads", "1")
    assert result.exit_code == 0, result.output
    images = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*_dwi.nii.gz"))
    assert len(images) == 2
    for image in images:
        a, b = (np.asarray(nib.load(tmp_path / run / image).dataobj) for run in ("one", "two"))
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6 * float(a.max()))


def test_bad_bids_runs_are_one_sentence(dataset, tmp_path):
    for args, fragment in (
        ((dataset, tmp_path / "o", "group", "--scale", "2"), "analysis level must be 'participant'"),
        (
            (dataset, tmp_path / "o", "participant", "--scale", "2", "--participant-label", "09"),
            "no participant 09",
        ),
        ((tmp_path, tmp_path / "o", "participant", "--scale", "2"), "no dataset_description.json"),
        ((dataset, dataset, "participant", "--scale", "2"), "must not be the BIDS dataset itself"),
        ((dataset, tmp_path / "o", "participant", "--scale", "2", "extra"), "unexpected argument"),
        ((dataset, tmp_path / "o", "participant", "--scale", "2", "--scheduler", "nonsense"), "scheduler"),
    ):
        result = run(*args)
        assert result.exit_code == 2 and fragment in result.output, result.output


def test_mrtrix_directions_are_in_scanner_space():
    gtab = gradient_table(
        np.array([0.0, 1000.0, 1000.0]), bvecs=np.array([[0, 0, 0], [1.0, 0, 0], [0, 1.0, 0]])
    )
    ras = np.diag([2.0, 2.0, 2.0, 1.0])  # positive determinant: FSL's first axis is flipped
    np.testing.assert_allclose(mrtrix_table(gtab, ras)[:, :3], [[0, 0, 0], [-1, 0, 0], [0, 1, 0]], atol=1e-12)
    las = np.diag([-2.0, 2.0, 2.0, 1.0])  # negative: image axes as they are, x points left
    np.testing.assert_allclose(mrtrix_table(gtab, las)[:, :3], [[0, 0, 0], [-1, 0, 0], [0, 1, 0]], atol=1e-12)


def test_qsiprep_derivatives_bring_their_brain_mask_and_preprocessed_t1w(tmp_path):
    root = tmp_path / "qsiprep"
    description = {"Name": "qsiprep", "BIDSVersion": "1.9.0", "DatasetType": "derivative"}
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps(description))
    affine = oblique_affine()
    bvals, bvecs = gradients(1, 10)
    data = series_data(0)
    stem = "sub-01_space-T1w_desc-preproc_dwi"
    write_dwi(root / "sub-01" / "dwi", data, affine, bvals, bvecs, stem=stem)
    mask = np.zeros(data.shape[:3], np.uint8)
    mask[2:10, 2:9, 2:7] = 1
    nib.save(nib.Nifti1Image(mask, affine), root / "sub-01/dwi/sub-01_space-T1w_desc-brain_mask.nii.gz")
    (root / "sub-01/anat").mkdir()
    t1 = nib.Nifti1Image(np.random.default_rng(0).random((24, 22, 18)).astype(np.float32) + 0.5, affine)
    for name in ("sub-01_desc-preproc_T1w", "sub-01_T1w"):
        nib.save(t1, root / f"sub-01/anat/{name}.nii.gz")
    (job,) = find_jobs(root)
    assert job.mask.name == "sub-01_space-T1w_desc-brain_mask.nii.gz"
    assert job.t1.name == "sub-01_desc-preproc_T1w.nii.gz" and job.entities["space"] == "T1w"
    out = tmp_path / "out"
    result = run(root, out, "participant", "--voxel-size", "1.5", "--model", "csr-qspace-cpu")
    assert result.exit_code == 0, result.output
    (sidecar,) = out.rglob("*_dwi.json")
    zooms = nib.load(str(sidecar).replace(".json", ".nii.gz")).header.get_zooms()[:3]  # the grid's, ~1.5 mm
    assert sidecar.name == f"sub-01_space-T1w_res-{resolution_label(zooms)}_desc-csrdmri_dwi.json"
    assert json.loads(sidecar.read_text())["mask"].endswith("desc-brain_mask.nii.gz")


def test_upsample_options_reach_every_series(dataset, tmp_path):
    """New gradient directions (angular super-resolution) through the BIDS App, with its report."""
    out = tmp_path / "out"
    args = ["participant", "--participant-label", "01", "--scale", "2", "--model", "tricubic"]
    result = run(dataset, out, *args, "--out-directions", "12", "--max-output-gb", "1")
    assert result.exit_code == 0, result.output
    (image,) = out.rglob("*_dwi.nii.gz")
    bvals, _ = read_bvals_bvecs(
        str(image).replace(".nii.gz", ".bval"), str(image).replace(".nii.gz", ".bvec")
    )
    assert nib.load(image).shape[3] == len(bvals) == 13 and (bvals > 0).sum() == 12
    assert "FA" in (out / "sub-01.html").read_text()
    too_large = run(dataset, tmp_path / "o2", *args, "--max-output-gb", "0.000001")
    assert too_large.exit_code == 1 and "over the 1e-06 GB limit" in too_large.output
