"""Where one ``csrdmri upsample`` spends its time: wall seconds per phase, in-process.

The phases (encoder, decoder, the gated path's filter bank and gate sum, the safeguard's checks,
preparing the scans, the SH fit, writing the file) are timed by wrapping those functions, so a
phase that calls another includes it. Without a dataset, the shared Philips Ingenia at 2×.

Usage: python benchmarks/bench_phases.py MODEL [DATASET] [-- more csrdmri upsample arguments]
"""

from __future__ import annotations

import collections
import functools
import importlib
import sys
import tempfile
import time
from pathlib import Path

from bench_qspace import INGENIA

#: (module, function or Class.method, the modules that imported it by name).
PHASES = [
    ("csrdmri.models.qspace", "QSpaceINR.encode", ()),
    ("csrdmri.models.qspace", "QSpaceINR.decode_sampled", ()),
    ("csrdmri.models.gated", "GatedFilters.maps", ()),
    ("csrdmri.models.gated", "GatedFilters.forward", ()),
    ("csrdmri.inference.tiling", "decode_tile", ()),
    ("csrdmri.inference.joint", "correct_shells", ("csrdmri.inference.series",)),
    ("csrdmri.inference.joint", "shell_coefficients", ()),
    ("csrdmri.inference.safeguard", "shell_weights", ("csrdmri.inference.series",)),
    ("csrdmri.dmri.scan", "PreparedScan.prepare", ()),
    ("csrdmri.io.nifti", "save_nifti", ("csrdmri.inference.output",)),
]


def timed(seconds: dict[str, float], name: str, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds[name] += time.perf_counter() - start

    return wrapper


def instrument(seconds: dict[str, float]) -> None:
    """Wrap every phase of ``PHASES`` where it is defined and where it was imported by name."""
    for module_name, qualified, importers in PHASES:
        owner = importlib.import_module(module_name)
        *classes, attribute = qualified.split(".")
        for cls in classes:
            owner = getattr(owner, cls)
        wrapped = timed(seconds, qualified, getattr(owner, attribute))
        setattr(owner, attribute, wrapped)
        for importer in importers:
            setattr(importlib.import_module(importer), attribute, wrapped)


def main() -> None:
    args = sys.argv[1:]
    extra = args[args.index("--") + 1 :] if "--" in args else []
    args = args[: args.index("--")] if "--" in args else args
    if not args:
        sys.exit(__doc__)
    model, dataset = args[0], args[1] if len(args) > 1 else str(INGENIA)
    seconds: dict[str, float] = collections.defaultdict(float)
    instrument(seconds)
    from csrdmri.cli import app

    with tempfile.TemporaryDirectory() as scratch:
        out = str(Path(scratch) / "out.nii.gz")
        start = time.perf_counter()
        try:
            command = ["upsample", dataset, "--out", out, "--scale", "2", "--model", model, *extra]
            app(command, prog_name="csrdmri")
        except SystemExit as done:
            if done.code:
                raise
        total = time.perf_counter() - start
    print(f"| phase | seconds |\n|---|---|\n| whole command | {total:.2f} |")
    for name, value in seconds.items():
        print(f"| {name} | {value:.2f} |")


if __name__ == "__main__":
    main()
