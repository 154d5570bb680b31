"""The machine line every benchmark prints: CPU model, cores, threads, torch and GPU."""

from __future__ import annotations

import os
import platform


def describe(threads: int) -> str:
    """``machine: CPU model, N cores, T threads, torch X[, GPU name]``."""
    import torch

    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    cpu = names[0] if names else platform.processor() or platform.machine()
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"machine: {cpu}, {os.cpu_count()} cores, {threads} threads, torch {torch.__version__}{gpu}"
