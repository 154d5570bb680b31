"""The ``csrdmri`` command line: thin typer commands over the package's modules."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from csrdmri.errors import InputError, about
from csrdmri.weights import DEFAULT_MODEL, shipped

app = typer.Typer(
    help="Continuous super-resolution of diffusion MRI guided by T1w anatomy (CSR-dMRI).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

InputArg = Annotated[
    Path,
    typer.Argument(
        help="DWI NIfTI file, or a dataset folder (HCP subject, BIDS subject, or a folder "
        "with dwi.nii.gz + dwi.bval + dwi.bvec [+ t1w.nii.gz])."
    ),
]
BvalOpt = Annotated[
    Path | None, typer.Option("--bval", help="FSL b-value file (default: found beside the DWI).")
]
BvecOpt = Annotated[
    Path | None, typer.Option("--bvec", help="FSL b-vector file (default: found beside the DWI).")
]


def _terminated(signum: int, frame: object) -> None:
    # SIGTERM (kill, a batch system's time limit) unwinds like Ctrl-C, so temporary files
    # and partial outputs are removed on the way out; exit status 128 + 15 as the shell does.
    raise SystemExit(143)


def user_errors(command):
    """Turn :class:`InputError` into one line on stderr and exit status 2 (no traceback), and
    let SIGTERM clean up like Ctrl-C."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        logging.basicConfig(format="csrdmri: warning: %(message)s", level=logging.WARNING)
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _terminated) if main else None
        try:
            return command(*args, **kwargs)
        except InputError as exc:
            typer.echo(f"csrdmri: error: {exc}", err=True)
            raise typer.Exit(2) from None
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


def parse_list(text: str, name: str) -> list[float]:
    """``"2"``, ``"2,2,1"``, ``"2x2x1"`` or ``"2 3 4"`` → a list of numbers."""
    try:
        values = [float(p) for p in re.split(r"[,x×\s]+", text.strip()) if p]
    except ValueError:
        raise InputError(f"{name} must be a number or numbers like 2,2,1; got {text!r}") from None
    if not values:
        raise InputError(f"{name} needs at least one number")
    return values


def parse_triplet(text: str | None, name: str) -> list[float] | None:
    """One number or three (per axis), as :func:`parse_list`; ``None`` stays ``None``."""
    if text is None:
        return None
    values = parse_list(text, name)
    if len(values) not in (1, 3):
        raise InputError(f"{name} needs 1 or 3 numbers, got {len(values)} in {text!r}")
    return values


@app.command()
@user_errors
def info(
    path: InputArg,
    bval: BvalOpt = None,
    bvec: BvecOpt = None,
    t1: Annotated[
        Path | None, typer.Option("--t1", help="T1w image (default: found in a dataset folder).")
    ] = None,
    mask: Annotated[Path | None, typer.Option("--mask", help="Brain mask on the DWI grid.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the facts as JSON.")] = False,
) -> None:
    """Describe a dataset: grid, voxel size, orientation, shells, brain mask, T1w coverage."""
    from csrdmri.info import describe, format_facts
    from csrdmri.layout import find_dataset

    facts = describe(find_dataset(path, bval, bvec, t1, mask))
    typer.echo(json.dumps(facts, indent=2) if as_json else format_facts(facts))


@app.command()
@user_errors
def upsample(
    path: InputArg,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output NIfTI (.nii.gz); .bval/.bvec/.json are written beside it."),
    ],
    scale: Annotated[
        str | None, typer.Option(help="Scale factor: one number (2, 2.4) or one per axis (2,2,1).")
    ] = None,
    voxel_size: Annotated[
        str | None, typer.Option(help="Target voxel size in mm: one number (1.25) or one per axis.")
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            help=f"'tricubic', a shipped model ({', '.join(shipped())}), a .safetensors checkpoint "
            "or a training run folder."
        ),
    ] = DEFAULT_MODEL,
    t1: Annotated[
        Path | None, typer.Option("--t1", help="T1-weighted image (any grid: resampled by the affines).")
    ] = None,
    mask: Annotated[
        Path | None,
        typer.Option(help="Brain mask on the DWI grid; default: the dataset's, else median_otsu on the b0."),
    ] = None,
    bval: BvalOpt = None,
    bvec: BvecOpt = None,
    device: Annotated[str, typer.Option(help="Torch device: cpu, cuda or cuda:N.")] = "cpu",
    precision: Annotated[
        str, typer.Option(help="fp32, or bf16 / fp16 (CUDA) autocast for the model.")
    ] = "fp32",
    tile: Annotated[
        int,
        typer.Option(
            help="Largest encoder tile side in input voxels, halo included: a tile holds at most "
            "N³ voxels (memory vs. speed; must exceed twice the model's receptive radius)."
        ),
    ] = 130,
    chunk: Annotated[int, typer.Option(help="Output voxels decoded at once (memory vs. speed).")] = 16384,
    margin: Annotated[int, typer.Option(help="Input voxels by which the brain mask is dilated.")] = 2,
    outside: Annotated[
        str, typer.Option(help="Output outside the dilated mask: 'tricubic' or 'zero'.")
    ] = "tricubic",
    adapt_steps: Annotated[
        int,
        typer.Option(
            help="Fine-tune a copy of the model on this scan for N steps first (self-supervised: "
            "its own patches degraded by the scale; about half a second per step on 2 CPU cores). "
            "0: off (the default: on two real scans it has not helped yet, docs/results.md)."
        ),
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of --adapt-steps (same seed, same output).")] = 0,
    max_output_gb: Annotated[
        float,
        typer.Option(
            help="Largest output image allowed, GB of float32 (a guard against typos such as "
            "--scale 20); the same space is needed on disk beside --out while it is computed."
        ),
    ] = 64.0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")] = False,
) -> None:
    """Super-resolve every volume of a DWI series to a new scale or voxel size (field of view kept).

    PATH is a DWI NIfTI (with .bval/.bvec beside it or given), or a BIDS, HCP or FSL-style
    subject folder. The default model is the CSR-dMRI weights shipped with the package, which
    need the subject's T1w (--t1, or the one found in a BIDS/HCP folder); for a scan without a
    T1w, use --model arssr-cpu (shipped, no T1w) or tricubic.
    """
    from csrdmri.grid import TargetGrid
    from csrdmri.infer import Options, Upsampler, check_output, check_size, upsample_to_file
    from csrdmri.io import load_dwi
    from csrdmri.layout import find_dataset
    from csrdmri.motion import warn_if_moved
    from csrdmri.preprocess import series_mask, shell_indices, t1_on_dwi_grid

    scales, voxels = parse_triplet(scale, "--scale"), parse_triplet(voxel_size, "--voxel-size")
    if (scales is None) == (voxels is None):
        raise InputError("give exactly one of --scale or --voxel-size")
    if scales is not None and (min(scales) < 1 or max(scales) <= 1):
        raise InputError(f"--scale must be > 1 to upsample (per axis ≥ 1), got {scale}")
    options = Options(device, precision, tile, chunk, margin, outside)
    up = Upsampler.load(model, adapt_steps, seed)
    paths = find_dataset(path, bval, bvec, t1, mask)
    if up.uses_t1 and paths.t1 is None:
        raise InputError(
            f"model {model} uses a T1w: give one with --t1 (or use --model arssr-cpu or tricubic, "
            "which need none)"
        )
    series = load_dwi(paths)
    grid = TargetGrid.over(series.shape, series.affine, scale=scales, voxel_size=voxels)
    if any(m < n for m, n in zip(grid.shape, grid.src_shape, strict=True)):
        zooms = " × ".join(f"{z:.4g}" for z in series.zooms)
        raise InputError(f"--voxel-size {voxel_size} mm is larger than the input's voxels ({zooms} mm)")
    check_size(grid, series.data.shape[3], max_output_gb)
    out = check_output(out, force)
    brain = series_mask(series) if up.model is not None else None
    t1_lr = t1_on_dwi_grid(paths.t1, series, brain) if up.uses_t1 else None
    if up.model is not None:  # once per user run (evaluation re-upsamples degraded copies)
        with about(paths.dwi):
            warn_if_moved(series, shell_indices(series.gtab))
    upsample_to_file(series, grid, up, out, brain, t1_lr, options)
    shape = " × ".join(map(str, grid.shape))
    zooms = " × ".join(f"{z:.4g}" for z in grid.zooms)
    typer.echo(f"wrote {out}: {shape} × {series.data.shape[3]} volumes, voxel {zooms} mm ({model})")


@app.command()
@user_errors
def demo(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the NIfTIs, metrics.md and comparison.png.")
    ],
    model: Annotated[str, typer.Option(help="Model compared with tricubic.")] = DEFAULT_MODEL,
    seed: Annotated[int, typer.Option(help="Phantom seed.")] = 0,
) -> None:
    """Show what the package does in a few minutes: a phantom block degraded 2×, super-resolved
    by tricubic and by a trained model, scored against the truth, and drawn side by side."""
    from csrdmri.demo import run_demo

    typer.echo(run_demo(out, model, seed), nl=False)
    typer.echo(f"wrote {out}/ (truth/, input/, sr_*.nii.gz, metrics.md, comparison.png)")


@app.command()
@user_errors
def phantom(
    out: Annotated[Path, typer.Option("--out", "-o", help="Cohort folder (created).")],
    subjects: Annotated[int, typer.Option(help="Number of subjects (split 70/10/20).")] = 20,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 0,
    voxel_size: Annotated[float, typer.Option(help="Isotropic voxel size in mm (HCP: 1.25).")] = 1.25,
    directions: Annotated[int, typer.Option(help="Diffusion directions on the sphere.")] = 90,
    b0s: Annotated[int, typer.Option(help="Interleaved b0 volumes.")] = 18,
    bvalue: Annotated[float, typer.Option(help="b-value in s/mm².")] = 1000.0,
    snr: Annotated[float, typer.Option(help="b0 SNR in white matter (mean signal / Rician sigma).")] = 19.0,
    crossing: Annotated[
        bool, typer.Option(help="Second fibre population where orientation is ambiguous.")
    ] = True,
) -> None:
    """Generate a synthetic HCP-like cohort from the MNI152 templates (HCP layout + cohort.json).

    An interrupted run can be continued by running the same command again.
    """
    from tqdm import tqdm

    from csrdmri.phantom import PhantomParams, generate_cohort

    params = PhantomParams(
        voxel_size=voxel_size, n_dirs=directions, n_b0=b0s, bvalue=bvalue, snr=snr, crossing=crossing
    )
    with tqdm(total=subjects, desc="phantom subjects", unit="subject", disable=None) as bar:
        cohort = generate_cohort(out, subjects, seed, params, progress=lambda _: bar.update())
    split = cohort["split"]
    typer.echo(
        f"wrote {subjects} subjects to {out} ({len(split['train'])} train, "
        f"{len(split['validation'])} validation, {len(split['test'])} test)"
    )


@app.command()
@user_errors
def evaluate(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="Cohort folder (cohort.json), e.g. from `csrdmri phantom`; optional with --real."
        ),
    ] = None,
    models: Annotated[
        str,
        typer.Option(
            help="Comma-separated methods, each NAME or LABEL=NAME: 'tricubic', a shipped model "
            f"({', '.join(shipped())}), a checkpoint (.safetensors) or a run folder; NAME@N: "
            "adapted for N steps to each whole volume or real scan first (the patch protocol "
            "uses the model as is)."
        ),
    ] = "tricubic",
    scales: Annotated[str, typer.Option(help="Scale factors of the paper protocol (patches).")] = "2,3,4,2.4",
    patches: Annotated[
        int, typer.Option(help="40³ patches per subject (one random b=1000 volume each).")
    ] = 9,
    seed: Annotated[int, typer.Option(help="Seed of the patch positions and volumes.")] = 0,
    split: Annotated[str, typer.Option(help="Cohort split to evaluate on.")] = "test",
    volume_subjects: Annotated[
        int, typer.Option(help="Subjects of the split also evaluated as whole volumes (0: none).")
    ] = 1,
    volume_scales: Annotated[str, typer.Option(help="Scale factors of the whole-volume protocol.")] = "2",
    directions: Annotated[
        int,
        typer.Option(
            help="b≈1000 volumes per whole volume or real scan, spread over the sphere (0: all; "
            "each costs one model run, and DTI needs at least 6)."
        ),
    ] = 30,
    real: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated real scans (dataset folders, or folders of them, e.g. "
            "../shared/data/real) for the degradation-based protocol."
        ),
    ] = None,
    real_scales: Annotated[str, typer.Option(help="Scale factors of the real-scan protocol.")] = "2,2.4",
    out: Annotated[
        Path | None, typer.Option(help="Report folder: report.md, results.json, figures/ (else: print).")
    ] = None,
) -> None:
    """Evaluate methods: the paper's patch protocol (Tables 1 and 2) on a cohort's test split,
    whole held-out volumes with DTI errors, and real scans degraded then super-resolved.

    Evaluating a model on a subject that trained or selected it is refused.
    """
    import sys

    from csrdmri.evaluate import parse_methods
    from csrdmri.report import run_report

    if data is None and not real:
        raise InputError("give a cohort with --data, real scans with --real, or both")
    lists = {}
    for name, text in (
        ("--scales", scales),
        ("--volume-scales", volume_scales),
        ("--real-scales", real_scales),
    ):
        lists[name] = parse_list(text, name)
        if min(lists[name]) <= 1:
            raise InputError(f"{name} must all be > 1, got {text}")
    if patches < 1 or volume_subjects < 0 or directions < 0:
        raise InputError("--patches must be positive, --volume-subjects and --directions not negative")
    methods = parse_methods(models)
    table = run_report(
        out,
        " ".join(["csrdmri", *sys.argv[1:]]),
        methods,
        data,
        lists["--scales"],
        patches,
        seed,
        split,
        volume_subjects,
        lists["--volume-scales"],
        directions or None,
        [Path(p.strip()) for p in (real or "").split(",") if p.strip()],
        lists["--real-scales"],
    )
    if table:
        typer.echo(table)
    if out is not None:
        typer.echo(f"wrote {out / 'report.md'}")


@app.command()
@user_errors
def compare(
    images: Annotated[
        list[str],
        typer.Argument(
            help="4D NIfTI series over the same field of view, as PATH or LABEL=PATH; coarser ones "
            "are shown with their own voxels.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")],
    volume: Annotated[int, typer.Option(help="Volume to show (0-based index).")] = 1,
    truth: Annotated[
        Path | None, typer.Option(help="Reference series: shown last, with |error| maps of the others.")
    ] = None,
    height: Annotated[float, typer.Option(help="Axial slice, as a fraction of the height (0-1).")] = 0.5,
) -> None:
    """Draw one axial slice of several series side by side (e.g. input, tricubic, CSR-dMRI)."""
    from csrdmri.figures import comparison

    if out.suffix.lower() != ".png":
        raise InputError(f"--out {out} must be a .png file")
    if not 0.0 <= height <= 1.0:
        raise InputError(f"--height must lie between 0 and 1, got {height}")
    series = {}
    for item in images:
        label, _, path = item.rpartition("=")
        series[label or Path(path).name.split(".nii")[0]] = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    typer.echo(f"wrote {comparison(series, out, volume, truth, height)}")


@app.command()
@user_errors
def figure(
    path: InputArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")],
    slice_z: Annotated[
        int | None, typer.Option("--slice", help="Axial slice index (default: mid-brain).")
    ] = None,
    bval: BvalOpt = None,
    bvec: BvecOpt = None,
    t1: Annotated[
        Path | None, typer.Option("--t1", help="T1w image (default: found in a dataset folder).")
    ] = None,
) -> None:
    """Draw an axial slice of the T1w, mean b0, one DWI and the DTI FA map of a dataset."""
    from csrdmri.figures import overview
    from csrdmri.layout import find_dataset

    if out.suffix.lower() != ".png":
        raise InputError(f"--out {out} must be a .png file")
    out.parent.mkdir(parents=True, exist_ok=True)
    typer.echo(f"wrote {overview(find_dataset(path, bval, bvec, t1), out, slice_z)}")


@app.command()
@user_errors
def train(
    data: Annotated[
        list[Path],
        typer.Option(
            "--data",
            help="Training data: a cohort folder (cohort.json split), a folder of subjects or one "
            "scan's folder (HCP, BIDS or FSL-style). Repeat to mix sources, e.g. a phantom cohort "
            "and your own scans.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, log.csv, loss.png.")],
    preset: Annotated[
        str, typer.Option(help="Training preset: 'paper' (the paper's settings) or 'cpu'.")
    ] = "cpu",
    model: Annotated[
        str | None, typer.Option(help="Model name (csr-dmri, arssr, ...); default: the preset's.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="JSON file of training options overriding the preset.")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Number of epochs (overrides the preset; extends a resumed run).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
    ] = False,
    device: Annotated[
        str | None, typer.Option(help="Torch device (cpu, cuda, cuda:1); default: the GPU if there is one.")
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the subjects' prepared arrays (default: <out>/cache); runs on the same "
            "data can share one."
        ),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            help="Share of the training pairs each --data source gives, comma-separated in their "
            "order, e.g. 1,1 (default: every training subject alike).",
        ),
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            help="Start from these weights (a shipped model name, a checkpoint or a run folder) "
            "instead of a random initialisation: fine-tuning. The model must match the run's.",
        ),
    ] = None,
) -> None:
    """Train a model on the paper's patch protocol (validation PSNR against tricubic).

    Runs data-parallel when started by torchrun, e.g.
    ``torchrun --nproc_per_node=4 $(which csrdmri) train --preset paper ...``
    (NCCL on GPUs, gloo on CPU; the batch is split over the processes).
    """
    from dataclasses import asdict

    from csrdmri.train import TrainConfig, preset_for
    from csrdmri.train import train as run_training

    user: dict = {}
    if config is not None:
        try:
            user = json.loads(config.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read training config {config}: {exc}") from None
        if not isinstance(user, dict):
            raise InputError(f"training config {config} must hold a JSON object")
    name = model or user.get("model")
    values = asdict(preset_for(preset, name if isinstance(name, str) else None))
    values.update(user)
    if model is not None:
        values["model"] = model
    shares = None
    if weights is not None:
        try:
            shares = [float(w) for w in weights.split(",")]
        except ValueError:
            raise InputError(f"--weights must be numbers separated by commas, got {weights!r}") from None
    scores = run_training(
        TrainConfig.from_dict(values),
        data,
        out,
        resume=resume,
        cache=cache,
        epochs=epochs,
        device=device,
        weights=shares,
        init=init,
    )
    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"finished {out}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
