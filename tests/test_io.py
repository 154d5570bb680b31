"""Dataset layouts, loading, saving (affines, b-tables) and atomic writes."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import gradients, oblique_affine, write_dwi
from dipy.io import read_bvals_bvecs

from csrdmri.core.errors import InputError
from csrdmri.io.layout import find_dataset
from csrdmri.io.nifti import HOST, atomic_path, load_dwi, load_image, save_gradients, save_nifti

DATA = np.arange(6 * 5 * 4 * 7, dtype=np.float32).reshape(6, 5, 4, 7)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def test_fsl_file_with_stem_gradients(tmp_path):
    dwi = write_dwi(tmp_path, DATA, np.eye(4), *gradients(), stem="sub_dwi_ap")
    found = find_dataset(dwi)
    assert (found.bval.name, found.bvec.name, found.layout) == ("sub_dwi_ap.bval", "sub_dwi_ap.bvec", "fsl")


def test_fsl_folder_with_bvals_bvecs(tmp_path):
    write_dwi(tmp_path, DATA, np.eye(4), stem="data")
    np.savetxt(tmp_path / "bvals", gradients()[0][None], fmt="%g")
    np.savetxt(tmp_path / "bvecs", gradients()[1].T)
    found = find_dataset(tmp_path)
    assert (found.dwi.name, found.bval.name, found.bvec.name) == ("data.nii.gz", "bvals", "bvecs")
    assert load_dwi(found).data.shape == DATA.shape


def test_hcp_layout(tmp_path):
    diff = tmp_path / "100307" / "T1w" / "Diffusion"
    for name in ("data.nii.gz", "bvals", "bvecs", "nodif_brain_mask.nii.gz"):
        _touch(diff / name)
    t1 = _touch(tmp_path / "100307" / "T1w" / "T1w_acpc_dc_restore_1.25.nii.gz")
    found = find_dataset(tmp_path / "100307")
    assert found.layout == "hcp"
    assert found.dwi == diff / "data.nii.gz" and found.bval == diff / "bvals" and found.bvec == diff / "bvecs"
    assert found.mask == diff / "nodif_brain_mask.nii.gz" and found.t1 == t1


def test_bids_subject(tmp_path):
    sub = tmp_path / "sub-01"
    for name in (
        "dwi/sub-01_dwi.nii.gz",
        "dwi/sub-01_dwi.bval",
        "dwi/sub-01_dwi.bvec",
        "dwi/sub-01_dwi.json",
    ):
        _touch(sub / name)
    t1 = _touch(sub / "anat" / "sub-01_T1w.nii.gz")
    found = find_dataset(sub)
    assert found.layout == "bids" and found.dwi.name == "sub-01_dwi.nii.gz" and found.t1 == t1
    assert found.bval.name == "sub-01_dwi.bval"
    # Explicit paths win over what is found.
    other = _touch(tmp_path / "t1.nii.gz")
    assert find_dataset(sub, t1=other).t1 == other


def test_plain_folder_ambiguity_and_absence(tmp_path):
    _touch(tmp_path / "a_dwi.nii.gz")
    _touch(tmp_path / "b_dwi.nii.gz")
    with pytest.raises(InputError, match="several DWI"):
        find_dataset(tmp_path)
    with pytest.raises(InputError, match="no DWI image"):
        find_dataset(_touch(tmp_path / "empty" / "x.txt").parent)
    with pytest.raises(InputError, match="not found"):
        find_dataset(tmp_path / "missing.nii.gz")


def test_load_applies_scaling_and_keeps_the_sform(tmp_path):
    raw = np.arange(4 * 4 * 3 * 7, dtype=np.int16).reshape(4, 4, 3, 7)
    img = nib.Nifti1Image(raw, oblique_affine())
    img.header.set_slope_inter(0.5, 10.0)
    qform = oblique_affine(angles=(0.0, 0.0, 0.0))
    img.set_qform(qform, code=1)
    nib.save(img, tmp_path / "dwi.nii.gz")
    bvals, bvecs = gradients()
    np.savetxt(tmp_path / "dwi.bval", bvals[None], fmt="%g")
    np.savetxt(tmp_path / "dwi.bvec", bvecs.T)
    series = load_dwi(find_dataset(tmp_path / "dwi.nii.gz"))
    np.testing.assert_allclose(series.data, raw * 0.5 + 10.0)
    np.testing.assert_allclose(series.affine, oblique_affine())  # sform wins over the qform
    np.testing.assert_allclose(series.gtab.bvals, bvals)
    np.testing.assert_allclose(series.zooms, [1.75, 1.75, 2.5])


def test_save_nifti_writes_affine_to_qform_and_sform(tmp_path):
    affine = oblique_affine()
    data = np.random.default_rng(0).random((5, 6, 7, 2)).astype(np.float32)
    save_nifti(tmp_path / "out.nii.gz", data, affine)
    img = nib.load(tmp_path / "out.nii.gz")
    np.testing.assert_allclose(img.get_sform(), affine, atol=1e-5)
    np.testing.assert_allclose(img.get_qform(), affine, atol=1e-5)  # rotation is exactly representable
    assert int(img.header["sform_code"]) == int(img.header["qform_code"]) == 1
    np.testing.assert_allclose(img.header.get_zooms()[:3], [1.75, 1.75, 2.5], rtol=1e-6)
    assert img.header.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), data)


@pytest.mark.parametrize("shape", [(5, 6, 7, 3), (9, 4, 5)])
@pytest.mark.parametrize("chunk", [3, 40, 1 << 20])  # part of a row's run, planes, whole volumes
def test_save_nifti_in_chunks_writes_the_bytes_nibabel_writes(tmp_path, monkeypatch, shape, chunk):
    data = np.random.default_rng(1).random(shape).astype(np.float32)
    template = nib.Nifti1Header()
    template.extensions.append(nib.nifti1.Nifti1Extension("comment", b"scanner notes"))
    monkeypatch.setattr("csrdmri.io.nifti.WRITE_CHUNK", chunk)
    save_nifti(tmp_path / "ours.nii.gz", data, oblique_affine(), template=template)
    ours = nib.load(tmp_path / "ours.nii.gz")
    nib.save(nib.Nifti1Image(data, ours.affine, ours.header), tmp_path / "nibabel.nii.gz")
    assert len(ours.header.extensions) == 1
    written = [gzip.decompress((tmp_path / name).read_bytes()) for name in ("ours.nii.gz", "nibabel.nii.gz")]
    assert written[0] == written[1]
    np.testing.assert_array_equal(ours.get_fdata(dtype=np.float32), data)


def test_save_gradients_round_trip(tmp_path):
    bvals, bvecs = gradients(n_b0=2, n_dirs=5)
    from dipy.core.gradients import gradient_table

    save_gradients(tmp_path / "out.nii.gz", gradient_table(bvals, bvecs=bvecs))
    rb, rv = read_bvals_bvecs(str(tmp_path / "out.bval"), str(tmp_path / "out.bvec"))
    np.testing.assert_allclose(rb, bvals)
    np.testing.assert_allclose(rv, bvecs, atol=1e-6)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    dest = tmp_path / "out.nii.gz"
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_text("half written")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(dest) as tmp:
        tmp.write_text("done")
    assert dest.read_text() == "done" and list(tmp_path.iterdir()) == [dest]


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    """SIGKILL leaves atomic_path's temporary behind; the next write of the same file removes it,
    and only it: not a live writer's, not another machine's."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    other_host = "0" * 6 if HOST != "0" * 6 else "1" * 6
    names = {
        "killed": f".loss.png.{HOST}-{gone.pid}-{'a' * 12}.tmp.png",
        "alive": f".loss.png.{HOST}-{os.getpid()}-{'b' * 12}.tmp.png",
        "elsewhere": f".loss.png.{other_host}-{gone.pid}-{'c' * 12}.tmp.png",
        "another file's": f".log.csv.{HOST}-{gone.pid}-{'d' * 12}.tmp.csv",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"half written")
    with atomic_path(tmp_path / "loss.png") as tmp:
        tmp.write_bytes(b"png")
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"loss.png", *names.values()} - {names["killed"]}


# --- bad input: one clear sentence naming the file -------------------------------------------


def _dataset(tmp_path, data=DATA, bvals=None, bvecs=None):
    b, v = gradients()
    return find_dataset(
        write_dwi(tmp_path, data, np.eye(4), b if bvals is None else bvals, v if bvecs is None else bvecs)
    )


def test_missing_bval(tmp_path):
    dwi = write_dwi(tmp_path, DATA, np.eye(4))
    with pytest.raises(InputError, match=r"b-value file not found: .*dwi\.bval"):
        load_dwi(find_dataset(dwi))


def test_bval_count_mismatch(tmp_path):
    with pytest.raises(InputError, match=r"lists 6 b-values but the DWI has 7 volumes"):
        load_dwi(_dataset(tmp_path, bvals=gradients()[0][:6]))


def test_bvec_count_mismatch(tmp_path):
    b, v = gradients()
    write_dwi(tmp_path, DATA, np.eye(4), b, v)
    np.savetxt(tmp_path / "dwi.bvec", v[:5].T)
    with pytest.raises(InputError, match=r"dwi\.bvec lists 5 b-vectors but the DWI has 7 volumes"):
        load_dwi(find_dataset(tmp_path / "dwi.nii.gz"))


def test_3d_image_where_4d_is_needed(tmp_path):
    with pytest.raises(InputError, match=r"dwi\.nii\.gz is 3D .* a 4D image is needed"):
        load_dwi(_dataset(tmp_path, data=DATA[..., 0]))


def test_nan_voxels(tmp_path):
    data = DATA.copy()
    data[1, 1, 1, 3] = np.nan
    with pytest.raises(InputError, match=r"dwi\.nii\.gz has 1 NaN or infinite voxels"):
        load_dwi(_dataset(tmp_path, data=data))


def test_not_a_nifti(tmp_path):
    path = tmp_path / "dwi.nii.gz"
    path.write_bytes(gzip.compress(b"this is not an image" * 50))
    with pytest.raises(InputError, match=r"dwi\.nii\.gz is not a readable NIfTI"):
        load_image(path, "DWI", ndim=(4,))


def test_truncated_gzip(tmp_path):
    dataset = _dataset(tmp_path, data=np.random.default_rng(0).random((20, 20, 20, 7)).astype(np.float32))
    blob = dataset.dwi.read_bytes()
    dataset.dwi.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(InputError, match=r"dwi\.nii\.gz is corrupt or truncated"):
        load_dwi(dataset)
