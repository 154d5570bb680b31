"""The precision a model runs in: ``--precision auto`` (bf16 for the joint model where the
hardware pays it back, fp32 otherwise) and the autocast context of a precision."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch


@functools.cache
def bf16_faster(device_type: str) -> bool:
    """Whether bf16 autocast pays on this machine, decided from the hardware alone (so that
    every process of a run decides alike): a CUDA GPU that supports bf16; an x86 CPU with AMX,
    or an AMD one with AVX-512 BF16. Measured (docs/benchmarks.md): an AMD EPYC with AVX-512
    BF16 runs the joint model 1.3–1.5× faster in bf16, an Intel Xeon with AVX-512 BF16 but no AMX
    slower; AMX (Intel's matrix tiles) is the bf16 path oneDNN is built around, not measured
    here; elsewhere bf16 is emulated, and slower."""
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return cpu_bf16(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


def cpu_bf16(cpuinfo: str) -> bool:
    """:func:`bf16_faster`'s rule for a CPU, from the text of Linux's ``/proc/cpuinfo``."""
    words = set(cpuinfo.split())
    return "amx_bf16" in words or ("avx512_bf16" in words and "AuthenticAMD" in words)


def resolve_precision(precision: str, model: torch.nn.Module | None, device: torch.device | str) -> str:
    """``precision``, with ``"auto"`` made ``"bf16"`` for a model that predicts a correction of
    cubic interpolation per shell (``joint``: its output moves by < 0.1 % of the range, 88 dB
    PSNR against fp32, docs/benchmarks.md) where :func:`bf16_faster`, else ``"fp32"`` (a
    per-volume model's whole output would move by 0.5 %)."""
    if precision != "auto":
        return precision
    joint = getattr(model, "joint", False)
    return "bf16" if joint and bf16_faster(torch.device(device).type) else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``"bf16"``/``"fp16"`` (fp16 on CUDA only); nothing for ``"fp32"``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 autocast needs a CUDA device (use bf16 or fp32 on the CPU)")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device.type, dtype=dtype)
