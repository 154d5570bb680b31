"""Bad input never crashes and never leaves output behind (docs/reliability.md lists every case).

Each case breaks one thing in a small, otherwise valid scan folder (or in the command line) and
runs the real ``csrdmri`` command. Every case must end with exit status 2, one line on stderr
naming the problem and the offending file or option, no traceback, and no file created or
changed anywhere under the test's folder.
"""

from __future__ import annotations

import gzip
import json
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bad_inputs import (
    CASES,
    SHAPE,
    case,
    dwi_data,
    dwi_file,
    rewrite_dwi,
    set_voxels,
    tricubic_2x,
    upsample,
    write_scan,
)
from conftest import assert_user_error, gradients, oblique_affine, run
from safetensors.torch import load_file, save_file

from csrdmri.io.nifti import file_digest
from csrdmri.models.checkpoint import find_checkpoint

#: The documentation of every case (its table must show what the user sees).
RELIABILITY = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"


@case
def input_missing(scan):
    return tricubic_2x("nope/dwi.nii.gz"), ("not found", "nope")


@case
def not_a_nifti(scan):
    dwi_file(scan).write_bytes(gzip.compress(b"this is a text file, not an image\n" * 20))
    return tricubic_2x(dwi_file(scan)), (
        "not a readable NIfTI",
        "dwi.nii.gz",
    )


@case
def truncated_gzip(scan):
    raw = dwi_file(scan).read_bytes()
    dwi_file(scan).write_bytes(raw[: len(raw) // 2])
    return tricubic_2x(dwi_file(scan)), ("truncated", "dwi.nii.gz")


@case
def three_d_dwi(scan):
    rewrite_dwi(scan, dwi_data(scan)[..., 0])
    return tricubic_2x(dwi_file(scan)), ("is 3D", "4D", "dwi.nii.gz")


@case
def five_d_dwi(scan):
    rewrite_dwi(scan, np.stack([dwi_data(scan)] * 2, axis=-1))
    return tricubic_2x(dwi_file(scan)), ("is 5D", "dwi.nii.gz")


for _suffix, _what in (("bval", "b-value"), ("bvec", "b-vector")):

    def _missing(scan, suffix=_suffix, what=_what):
        (scan / f"dwi.{suffix}").unlink()
        return tricubic_2x(dwi_file(scan)), (f"{what} file not found", f"dwi.{suffix}")

    CASES[f"{_suffix}_missing"] = _missing


@case
def bval_count(scan):
    bvals = gradients()[0]
    np.savetxt(scan / "dwi.bval", bvals[None, :-1], fmt="%g")
    return tricubic_2x(scan), ("6 b-values", "7 volumes", "dwi.bval")


@case
def bvec_count(scan):
    bvecs = gradients()[1]
    np.savetxt(scan / "dwi.bvec", np.vstack([bvecs, bvecs[-1:]]).T, fmt="%.6f")
    return tricubic_2x(scan), ("8 b-vectors", "7 volumes", "dwi.bvec")


@case
def bval_not_numbers(scan):
    (scan / "dwi.bval").write_text("0 1000 1000 abc 1000 1000 1000\n")
    return tricubic_2x(scan), ("cannot read b-values", "dwi.bval")


@case
def bvec_zero_for_a_diffusion_volume(scan):
    bvecs = gradients()[1]
    bvecs[3] = 0.0
    np.savetxt(scan / "dwi.bvec", bvecs.T, fmt="%.6f")
    return tricubic_2x(scan), ("b-vector", "volume 3", "dwi.bvec")


@case
def no_b0(scan):
    bvals, bvecs = gradients()
    bvals[0], bvecs[0] = 1000.0, [1.0, 0.0, 0.0]
    write_scan(scan, bvals=bvals, bvecs=bvecs)
    return upsample(scan, "--scale", "2"), ("no b0 volume", "dwi.nii.gz")


@case
def no_b1000(scan):
    write_scan(scan, bvals=gradients(bvalue=3000.0)[0], bvecs=gradients()[1])
    return upsample(scan, "--scale", "2", "--model", "csr-dmri-cpu"), (
        "no volume with b = 1000",
        "dwi.nii.gz",
    )


@case
def nan_voxels(scan):
    set_voxels(scan, np.s_[5, 5, 5, 2], np.nan)
    return tricubic_2x(scan), ("NaN or infinite", "dwi.nii.gz")


@case
def infinite_voxels(scan):
    set_voxels(scan, np.s_[0, 0, 0, 0], np.inf)
    return tricubic_2x(scan), ("NaN or infinite", "dwi.nii.gz")


@case
def all_zero_volume(scan):
    set_voxels(scan, np.s_[..., 4], 0.0)
    return tricubic_2x(scan), ("volume 4", "all zero", "dwi.nii.gz")


@case
def zero_b0_inside_the_mask(scan):
    data = dwi_data(scan)
    data[3:13, 3:11, 2:10, 0] = 0.0
    rewrite_dwi(scan, data)
    mask = np.zeros(SHAPE, np.uint8)
    mask[4:12, 4:10, 3:9] = 1
    nib.save(nib.Nifti1Image(mask, oblique_affine()), scan / "mask.nii.gz")
    return upsample(scan, "--scale", "2", "--mask", scan / "mask.nii.gz"), (
        "mean b0 is zero",
        "most of the brain mask",
        "dwi.nii.gz",
    )


@case
def empty_mask(scan):
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), oblique_affine()), scan / "mask.nii.gz")
    return upsample(scan, "--scale", "2", "--mask", scan / "mask.nii.gz"), ("is empty", "mask.nii.gz")


@case
def mask_of_another_grid(scan):
    nib.save(nib.Nifti1Image(np.ones((8, 7, 6), np.uint8), oblique_affine()), scan / "mask.nii.gz")
    return upsample(scan, "--scale", "2", "--mask", scan / "mask.nii.gz"), (
        "not on the DWI grid",
        "mask.nii.gz",
    )


@case
def t1w_outside_the_dwi(scan):
    far = oblique_affine()
    far[:3, 3] += 500.0
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.float32), far), scan / "t1w.nii.gz")
    return upsample(scan, "--scale", "2"), ("does not overlap", "t1w.nii.gz")


@case
def t1w_absent(scan):
    (scan / "t1w.nii.gz").unlink()
    return upsample(dwi_file(scan), "--scale", "2", "--model", "csr-dmri-cpu"), ("uses a T1w", "--t1")


@case
def t1w_path_missing(scan):
    return upsample(dwi_file(scan), "--scale", "2", "--t1", scan / "T1.nii.gz"), ("not found", "T1.nii.gz")


#: Cases of `csrdmri upsample scan ... --model tricubic` options alone: options, fragments.
OPTION_CASES = {
    "scale_one": (["--scale", "1"], ("scale must be > 1", "--scale")),
    "scale_below_one": (["--scale", "0.5"], ("scale must be > 1", "--scale")),
    "scale_below_one_on_an_axis": (["--scale", "2,2,0.5"], ("scale must be > 1", "--scale")),
    "scale_absurd": (["--scale", "400"], ("GB", "--max-output-gb")),
    "scale_not_a_number": (["--scale", "abc"], ("--scale must be a number", "'abc'")),
    "scale_two_numbers": (["--scale", "2,2"], ("needs 1 or 3 numbers",)),
    "neither_scale_nor_voxel_size": ([], ("exactly one of a scale or a voxel size", "--scale")),
    "scale_and_voxel_size": (["--scale", "2", "--voxel-size", "1"], ("exactly one of",)),
    "voxel_size_larger_than_input": (["--voxel-size", "3"], ("larger than the input",)),
    "unknown_model": (["--scale", "2", "--model", "magic"], ("unknown model 'magic'",)),
    "adapt_tricubic": (["--scale", "2", "--adapt-steps", "5"], ("adaptation needs a model", "--adapt-steps")),
    "out_directions_too_few": (["--scale", "2", "--out-directions", "4"], ("at least 6", "--out-directions")),
    "out_directions_twice": (
        ["--scale", "2", "--out-directions", "8", "--out-bvecs", "dirs.bvec"],
        ("a file or as a number, not both",),
    ),
    "adapt_negative": (
        ["--scale", "2", "--model", "csr-dmri-cpu", "--adapt-steps", "-1"],
        ("must not be negative",),
    ),
}
for _name, (_options, _fragments) in OPTION_CASES.items():
    CASES[_name] = lambda scan, o=_options, f=_fragments: (upsample(scan, "--model", "tricubic", *o), f)


def doctored_checkpoint(path: Path, change: Callable[[dict], None]) -> Path:
    """A copy of the shipped default checkpoint at ``path`` with ``change`` applied to its
    metadata (the weights unchanged)."""
    from safetensors import safe_open

    shipped = find_checkpoint("csr-dmri-cpu")
    with safe_open(str(shipped), framework="pt") as handle:
        meta = json.loads(handle.metadata()["csrdmri"])
    change(meta)
    save_file(load_file(str(shipped)), str(path), metadata={"csrdmri": json.dumps(meta)})
    return path


@case
def checkpoint_of_another_architecture(scan):
    path = doctored_checkpoint(scan / "other.safetensors", lambda meta: meta["model"].update(width=32))
    return upsample(scan, "--scale", "2", "--model", path), ("do not match", "other.safetensors")


@case
def checkpoint_config_of_wrong_type(scan):
    path = doctored_checkpoint(
        scan / "odd.safetensors", lambda meta: meta["model"].update(latent="64; import os")
    )
    return upsample(scan, "--scale", "2", "--model", path), ("latent", "odd.safetensors")


@case
def checkpoint_config_absurd_size(scan):
    path = doctored_checkpoint(scan / "huge.safetensors", lambda meta: meta["model"].update(width=10**9))
    return upsample(scan, "--scale", "2", "--model", path), ("width", "huge.safetensors")


@case
def adapt_to_a_scan_too_small(scan):
    return upsample(scan, "--scale", "2", "--adapt-steps", "5"), ("cannot adapt to this scan",)


@case
def checkpoint_corrupted(scan):
    raw = find_checkpoint("csr-dmri-cpu").read_bytes()
    (scan / "broken.safetensors").write_bytes(raw[: len(raw) // 3])
    return upsample(scan, "--scale", "2", "--model", scan / "broken.safetensors"), (
        "not a readable safetensors",
        "broken.safetensors",
    )


@case
def pickled_weights(scan):
    with open(scan / "weights.pt", "wb") as handle:
        pickle.dump({"weight": torch.zeros(3)}, handle)
    return upsample(scan, "--scale", "2", "--model", scan / "weights.pt"), (
        "pickled files are refused",
        "weights.pt",
    )


@case
def output_exists(scan):
    out = scan.parent / "out" / "sr.nii.gz"
    out.parent.mkdir()
    out.write_text("precious")
    return tricubic_2x(scan), ("already exists", "--force")


@case
def output_not_nifti(scan):
    return ["upsample", scan, "--scale", "2", "--model", "tricubic", "--out", "out/sr.png"], (
        "must end in .nii.gz",
    )


@case
def output_folder_not_writable(scan):
    # /proc/self exists and takes no new files, even for root (chmod would not stop root).
    return ["upsample", scan, "--scale", "2", "--model", "tricubic", "--out", "/proc/self/sr.nii.gz"], (
        "cannot write",
        "/proc/self",
    )


@case
def phantom_without_subjects(scan):
    return ["phantom", "--out", "cohort", "--subjects", "0"], ("needs at least 1 subject", "got 0")


@case
def train_config_not_json(scan):
    (scan / "config.json").write_text("{epochs: 3")
    return ["train", "--data", scan, "--out", "run", "--config", scan / "config.json"], (
        "cannot read training config",
        "config.json",
    )


#: Cases of `csrdmri train --config FILE` with a bad value in FILE: its JSON, fragments.
CONFIG_CASES = {
    "train_config_wrong_type": ({"lr": "fast"}, ("lr must be float",)),
    "train_config_out_of_range": ({"batch_size": 0}, ("batch_size must be positive",)),
    "train_config_scale_range": ({"scale_range": [3, 0.5]}, ("scale_range",)),
    "train_unknown_option": ({"epoch": 3}, ("unknown training option", "epoch")),
    "train_randomisation_impossible": ({"randomisation": {"shift": 9}}, ("randomisation shift", "[0, 3]")),
}
for _name, (_values, _fragments) in CONFIG_CASES.items():

    def _bad_config(scan, values=_values, fragments=_fragments):
        (scan / "config.json").write_text(json.dumps(values))
        return ["train", "--data", scan, "--out", "run", "--config", scan / "config.json"], fragments

    CASES[_name] = _bad_config


@case
def train_weights_not_one_per_source(scan):
    fragments = ("2 sampling weights", "1 data source", "--weights")
    return ["train", "--data", scan, "--out", "run", "--weights", "1,2"], fragments


@case
def train_weights_not_numbers(scan):
    options = ["--weights", "1,lots"]
    return ["train", "--data", scan, "--out", "run", *options], ("--weights", "numbers", "1,lots")


@case
def train_init_of_another_model(scan):
    # arssr-cpu has no T1w input: not the csr-dmri the cpu preset trains.
    return ["train", "--data", scan, "--out", "run", "--init", "arssr-cpu"], ("arssr-cpu", "use_t1", "--init")


@case
def train_real_scan_missing(scan):
    (scan / "real.json").write_text(json.dumps({"real": ["nope"], "real_share": 0.5}))
    args = ["train", "--model", "csr-qspace", "--out", "run", "--config", scan / "real.json"]
    return args, ("real training scan not found", "nope", "--config")


@case
def train_real_scan_without_a_shell(scan):
    bvals, bvecs = gradients(1, 5)
    few = write_scan(scan.parent / "few", dwi_data(scan)[..., :6], bvals, bvecs)
    (scan / "real.json").write_text(json.dumps({"real": [str(few)], "real_share": 0.5}))
    args = ["train", "--model", "csr-qspace", "--out", "run", "--config", scan / "real.json"]
    return args, ("few/dwi.nii.gz", "a shell of at least 6 directions")


@case
def train_data_missing(scan):
    return ["train", "--data", scan.parent / "nope", "--out", "run"], ("training data not found", "nope")


@case
def train_without_subjects(scan):
    (scan.parent / "empty").mkdir()
    return ["train", "--data", scan.parent / "empty", "--out", "run"], ("no training subjects", "empty")


@case
def evaluate_on_a_training_subject(scan):
    digest = file_digest(dwi_file(scan))
    path = doctored_checkpoint(
        scan / "mine.safetensors", lambda meta: meta.update(seen_subjects={digest: "subject-07"})
    )
    return ["evaluate", "--real", scan, "--models", path], ("subject-07", "trained or selected", "dwi.nii.gz")


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_cleanly(name, tmp_path, monkeypatch):
    scan = write_scan(tmp_path / "scan")
    args, fragments = CASES[name](scan)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    result = run(*args)
    assert_user_error(result, *fragments)
    assert snapshot(tmp_path) == before
    # What the user sees is documented (up to the wording of other libraries' own messages).
    seen = result.stderr.strip().replace(f"{tmp_path}/", "")
    assert f"`{seen[:60]}" in RELIABILITY.read_text(), f"docs/reliability.md does not show: {seen}"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_documentation_lists_every_case():
    rows = [line for line in RELIABILITY.read_text().splitlines() if re.match(r"\| \d+ \| ", line)]
    numbers = [int(row.split("|")[1]) for row in rows]
    assert numbers == list(range(1, len(CASES) + 1)), "docs/reliability.md: one numbered row per case"
