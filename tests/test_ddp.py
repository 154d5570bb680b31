"""Data-parallel training under torchrun's environment (2 gloo processes on CPU): a failure while
the data is prepared ends every process at once with a clear error (the others used to wait at a
barrier: until the process group timed out under NCCL, until process 0's exit under gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from csrdmri.core.errors import InputError
from csrdmri.training.distributed import in_turn, process_group

#: Far below the process group's default timeout (10 to 30 minutes) at which a hang would end.
SECONDS = 60


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(port: int, rank: int) -> dict[str, str]:
    """What torchrun sets for process ``rank`` of 2."""
    return {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": "2",
        "OMP_NUM_THREADS": "1",
    }


def test_a_bad_subject_on_process_0_ends_both_processes(tmp_path):
    """``csrdmri train`` started as 2 processes on data whose one subject is not a NIfTI image:
    process 0 reports the subject, process 1 that process 0 failed — both within seconds."""
    subject = tmp_path / "data" / "broken"
    subject.mkdir(parents=True)
    (subject / "dwi.nii.gz").write_bytes(b"not a NIfTI image")
    (subject / "dwi.bval").write_text("0 1000\n")
    (subject / "dwi.bvec").write_text("0 1\n0 0\n0 0\n")
    (tmp_path / "config.json").write_text(json.dumps({"batch_size": 4}))  # shared by 2 processes
    command = [sys.executable, "-m", "csrdmri", "train", "--data", str(tmp_path / "data")]
    command += ["--out", str(tmp_path / "run"), "--config", str(tmp_path / "config.json"), "--device", "cpu"]
    port = _free_port()
    processes = [
        subprocess.Popen(
            command,
            env={**os.environ, **_environment(port, rank)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    try:
        errors = [process.communicate(timeout=SECONDS)[1] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert [process.returncode for process in processes] == [2, 2], errors
    assert "is not a readable NIfTI image" in errors[0] and "process 0 failed" not in errors[0], errors[0]
    assert "process 0 failed to prepare the training data: DWI file" in errors[1], errors[1]


def _take_turns(rank: int, port: int, folder: Path) -> None:
    """Process ``rank``: two rounds of :func:`in_turn`, recording what it saw in ``folder``."""
    os.environ.update(_environment(port, rank))
    rank, world, _ = process_group()

    def make_cache() -> bool:
        existed = (folder / "cache").exists()
        (folder / "cache").touch()
        return existed

    def fail_on_1() -> None:
        if rank == 1:
            raise InputError("subject x is unreadable")

    try:
        existed = in_turn(make_cache, rank, world, "prepare the training data")
        try:
            in_turn(fail_on_1, rank, world, "prepare the training data")
            error = ""
        except InputError as exc:
            error = str(exc)
        (folder / f"{rank}.json").write_text(json.dumps({"cache existed": existed, "error": error}))
    finally:
        dist.destroy_process_group()


def test_processes_take_turns_and_hear_of_each_others_failures(tmp_path):
    """Process 0 works first (process 1 finds its cache); a failure in process 1's turn reaches
    process 0 too."""
    context = mp.spawn(_take_turns, args=(_free_port(), tmp_path), nprocs=2, join=False)
    deadline = time.monotonic() + SECONDS
    while not context.join(timeout=1):  # raises if a process failed
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the processes still wait after {SECONDS} s")
    seen = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    assert [s["cache existed"] for s in seen] == [False, True]
    assert seen[0]["error"] == "process 1 failed to prepare the training data: subject x is unreadable"
    assert seen[1]["error"] == "subject x is unreadable"
