"""Interrupted work is never lost: real processes killed with SIGKILL, then run again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import TINY_RUN, gradients, oblique_affine, run, write_dwi
from safetensors.torch import load_file

from csrdmri.models import build_model, checkpoint
from csrdmri.models.checkpoint import load_model, save_checkpoint

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="watches /proc")

EXE = shutil.which("csrdmri", path=os.path.dirname(sys.executable))
#: One thread in every process, so a resumed run does the same float operations as a straight one.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def start(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [EXE, *map(str, args)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


def wait_until(condition, process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll ``condition()`` every 10 ms until true; fail if the process ends or time runs out."""
    end = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def kill(process: subprocess.Popen, how: signal.Signals = signal.SIGKILL) -> None:
    """Send ``how``; SIGKILL ends the process at once, SIGTERM unwinds it (exit status 143)."""
    process.send_signal(how)
    expected = -signal.SIGKILL if how == signal.SIGKILL else 128 + how
    assert process.wait() == expected, "the process ended before it was killed"


def writes_into(process: subprocess.Popen, folder: Path) -> bool:
    """Whether the process holds a file of ``folder`` open (its unnamed working file)."""
    fds = Path(f"/proc/{process.pid}/fd")
    try:
        links = [os.readlink(fd) for fd in fds.iterdir()]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return any(link.startswith(str(folder)) for link in links)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_killed_upsample_leaves_nothing_and_runs_again(tmp_path, how):
    """Killed (SIGKILL) or terminated (SIGTERM: kill, a batch system's time limit) mid-run: no
    partial output, no temporary file; the same command can simply be run again."""
    rng = np.random.default_rng(0)
    shape = (40, 40, 30)
    data = rng.uniform(300, 500, size=(*shape, 7)).astype(np.float32)
    data[..., 0] += 600.0
    scan = tmp_path / "scan"
    write_dwi(scan, data, oblique_affine(), *gradients())
    nib.save(
        nib.Nifti1Image(rng.uniform(0, 1, shape).astype(np.float32), oblique_affine()), scan / "t1w.nii.gz"
    )
    out = tmp_path / "out"
    out.mkdir()
    process = start("upsample", scan, "--scale", "2", "--out", out / "sr.nii.gz")
    wait_until(lambda: writes_into(process, out), process)  # the model's work has begun
    time.sleep(np.random.default_rng().uniform(0.0, 0.5))
    kill(process, how)
    assert list(out.iterdir()) == []
    result = run("upsample", scan, "--scale", "2", "--out", out / "sr.nii.gz")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["sr.bval", "sr.bvec", "sr.json", "sr.nii.gz"]
    assert nib.load(out / "sr.nii.gz").shape == (80, 80, 60, 7)


def test_training_killed_at_a_random_point_resumes_to_the_same_weights(small_cohort, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(asdict(replace(TINY_RUN, epochs=6, val_every=2))))
    common = ["--data", small_cohort, "--config", config, "--cache", tmp_path / "cache", "--device", "cpu"]
    straight = start("train", *common, "--out", tmp_path / "straight")
    wait_until((tmp_path / "straight" / "last.safetensors").exists, straight)
    began = time.monotonic()
    assert straight.wait() == 0, straight.stderr.read().decode()
    seconds = time.monotonic() - began  # epochs 2 to 6
    last = tmp_path / "killed" / "last.safetensors"
    process = start("train", *common, "--out", tmp_path / "killed")
    wait_until(last.exists, process)  # after the first epoch: a kill anywhere in the 5 others
    delay = np.random.default_rng().uniform(0.0, 0.8 * seconds)
    print(f"killed {delay:.2f} s after the first checkpoint (the straight run took {seconds:.2f} s more)")
    time.sleep(delay)
    kill(process)
    resumed = start(
        "train", "--data", small_cohort, "--cache", tmp_path / "cache", "--out", last.parent, "--resume"
    )
    assert resumed.wait() == 0, resumed.stderr.read().decode()
    expected, got = load_file(tmp_path / "straight" / "last.safetensors"), load_file(last)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)
    log = [line.split(",")[:2] for line in (last.parent / "log.csv").read_text().splitlines()]
    assert log == [
        line.split(",")[:2] for line in (tmp_path / "straight" / "log.csv").read_text().splitlines()
    ]
    assert not [p.name for p in last.parent.iterdir() if p.name.startswith(".")]


def test_a_crash_while_saving_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    config = {"architecture": "inr", "latent": 4, "g0": 4, "growth": 4, "blocks": 1, "layers": 1, "width": 8}
    model = build_model(config)
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model, {"model": config, "epoch": 0})
    good = path.read_bytes()

    def crash(tensors, filename, metadata):
        Path(filename).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_file", crash)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, {"model": config, "epoch": 1})
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]
    assert load_model(path)[1]["epoch"] == 0
