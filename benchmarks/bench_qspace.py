"""The joint q-space model's cost against cubic interpolation, same machine, same run.

Each dataset is super-resolved 2× by ``csrdmri upsample`` twice — ``--model tricubic`` and
``--model MODEL`` (the joint q-space model, with the dataset's T1w if it has one), written
uncompressed unless ``--suffix .nii.gz`` — each in its own process under ``/usr/bin/time``, so
wall time and peak resident memory are the command's own, as a user sees them. Printed: both
times, their ratio, both peaks; with several ``--precisions`` one row per precision, and with
``--rounds`` > 1 the commands alternate (cubic, then the model at each precision, round after
round), one row per run.

Datasets: the shared Philips Ingenia scan (128×128×82×17, 2 mm, with its MPRAGE) and an
HCP-size phantom subject (145×174×145, 18 b0 + 90 directions, generated first with
``csrdmri phantom --subjects 1`` into the scratch folder unless it is there).

Usage: python benchmarks/bench_qspace.py MODEL [--precisions auto,fp32] [--rounds N] [--scratch DIR]
[--suffix .nii.gz] [--skip-hcp] [--skip-ingenia]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch
from machine import describe

ROOT = Path(__file__).resolve().parents[1]
INGENIA = ROOT.parent / "shared" / "data" / "real" / "philips-ingenia-2mm"


def timed(arguments: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident GB of ``csrdmri ARGUMENTS`` run in its own process."""
    command = ["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "csrdmri", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds, kilobytes = result.stderr.strip().splitlines()[-1].split()
    return float(seconds), float(kilobytes) / 1024**2


def compare(
    name: str, dataset: Path, model: str, scratch: Path, precisions: list[str], rounds: int, suffix: str
) -> None:
    stem = name.split()[0]
    for _ in range(rounds):
        methods = [("tricubic", "fp32"), *((model, p) for p in precisions)]
        runs = {}
        for method, precision in methods:
            out = scratch / f"{stem}-{Path(method).stem}{suffix}"
            arguments = ["upsample", str(dataset), "--out", str(out), "--scale", "2", "--force"]
            runs[method, precision] = timed([*arguments, "--model", method, "--precision", precision])
        cubic_s, cubic_gb = runs["tricubic", "fp32"]
        for precision in precisions:
            model_s, model_gb = runs[model, precision]
            print(
                f"| {name} | {precision} | {cubic_s:.0f} s | {model_s:.0f} s | {model_s / cubic_s:.2f}× | "
                f"{cubic_gb:.2f} GB | {model_gb:.2f} GB |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--scratch", type=Path, default=ROOT / "runs" / "bench-qspace")
    parser.add_argument("--precisions", default="auto", help="comma-separated --precision values")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--suffix", default=".nii", help=".nii (default: gzip would dominate) or .nii.gz")
    parser.add_argument("--skip-hcp", action="store_true")
    parser.add_argument("--skip-ingenia", action="store_true")
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    settings = (args.model, args.scratch, args.precisions.split(","), args.rounds, args.suffix)
    print(describe(torch.get_num_threads()))
    print("| dataset | precision | cubic | joint model | ratio | cubic peak | model peak |")
    print("|---|---|---|---|---|---|---|")
    if not args.skip_ingenia:
        compare("Ingenia 2 mm, 17 volumes, with T1w", INGENIA, *settings)
    if not args.skip_hcp:
        hcp = args.scratch / "hcp"
        if not (hcp / "phantom000").exists():
            subprocess.run(
                [sys.executable, "-m", "csrdmri", "phantom", "--out", str(hcp), "--subjects", "1"], check=True
            )
        compare("HCP-size phantom, 108 volumes", hcp / "phantom000", *settings)


if __name__ == "__main__":
    main()
