"""Commands on cohorts and runs: ``demo``, ``phantom``, ``evaluate``, ``train``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from csrdmri.cli.app import app, parse_list, user_errors
from csrdmri.cli.options import PrecisionOpt
from csrdmri.core.errors import InputError
from csrdmri.weights import DEFAULT_MODEL, shipped


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
    from csrdmri.workflows.demo import run_demo

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
    bvalue: Annotated[
        str, typer.Option(help="b-value in s/mm², or several for a multi-shell scheme (1000,2000,3000).")
    ] = "1000",
    snr: Annotated[float, typer.Option(help="b0 SNR in white matter (mean signal / Rician sigma).")] = 19.0,
    crossing: Annotated[
        bool, typer.Option(help="Second fibre population where orientation is ambiguous.")
    ] = True,
    texture_sd: Annotated[
        float,
        typer.Option(
            help="S.d. (log scale) of the fine white/grey-matter diffusivity heterogeneity, shared "
            "with the T1w; 0 for tissue boundaries only (stronger than physiology at 0.5: docs/results.md)."
        ),
    ] = 0.5,
    orientation_sd: Annotated[
        float,
        typer.Option(
            help="R.m.s. angle (degrees) of a smooth random turn of the fibre orientations (correlation "
            "length 2.5 mm); 0: the white-matter map's own, smoother than a brain's (docs/results.md)."
        ),
    ] = 0.0,
    gm_anisotropy: Annotated[
        float,
        typer.Option(help="Grey-matter axial / radial diffusivity along the cortical normal (1: isotropic)."),
    ] = 1.0,
) -> None:
    """Generate a synthetic HCP-like cohort from the MNI152 templates (HCP layout + cohort.json).

    An interrupted run can be continued by running the same command again.
    """
    from tqdm import tqdm

    from csrdmri.phantom import PhantomParams, generate_cohort

    values = parse_list(bvalue, "--bvalue")
    bvalues = values[0] if len(values) == 1 else tuple(values)
    params = PhantomParams(
        voxel_size=voxel_size,
        n_dirs=directions,
        n_b0=b0s,
        bvalue=bvalues,
        snr=snr,
        crossing=crossing,
        texture_sd=texture_sd,
        orientation_sd=orientation_sd,
        gm_anisotropy=gm_anisotropy,
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
        int,
        typer.Option(
            help="40³ patches per subject (one random b=1000 volume each; 0: skip the patch protocol)."
        ),
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
    angular: Annotated[
        int | None,
        typer.Option(
            help="Also score angular super-resolution: keep this many directions per shell of each "
            "whole volume and real scan (at its first scale) and make the others (tricubic and "
            "joint models)."
        ),
    ] = None,
    degradation: Annotated[
        str,
        typer.Option(
            help="How the low-resolution data are made from the truth in every protocol: 'tricubic' "
            "(the paper's cubic B-spline sampling), 'kspace' (the central block of k-space, what "
            "a scanner acquiring the coarser matrix measures, Gibbs ringing included), or its "
            "variants 'kspace-apodised' (Hamming window), 'kspace-partial' (6/8 partial Fourier "
            "along the 2nd axis), 'kspace-slice' (2D slices: a slice profile through plane) and "
            "'kspace-acquired' (2D slices, in plane a cosine window of 0.2: the roll-off measured "
            "on real acquisitions)."
        ),
    ] = "tricubic",
    consistency: Annotated[
        str,
        typer.Option(
            help="Data consistency of every method's output with its LR input (whole volumes and "
            "real scans; as `upsample --consistency`): 'off', 'kspace' or 'image'."
        ),
    ] = "off",
    input_noise: Annotated[
        str,
        typer.Option(
            help="The input's noise under the consistency (as `upsample --input-noise`): 'auto' "
            "(checked with a consistency), 'kept', 'tensor' or 'checked'."
        ),
    ] = "auto",
    safeguard: Annotated[
        str,
        typer.Option(help="`upsample --safeguard` of every model (whole volumes and real scans): on or off."),
    ] = "on",
    slab: Annotated[
        int | None,
        typer.Option(
            help="Thin slabs: cut every whole volume and real scan to its central N low-resolution "
            "slices through the third axis (N × scale slices of the truth) before degrading it; "
            "the T1w stays whole, the brain mask is found from the slab."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Report folder: report.md, results.json, figures/ (else: print).")
    ] = None,
    device: Annotated[
        str,
        typer.Option(
            help="Torch device (cpu, cuda or cuda:N) of the whole-volume and real-scan protocols; "
            "the patch protocol runs on the CPU."
        ),
    ] = "cpu",
    precision: PrecisionOpt = "auto",
) -> None:
    """Evaluate methods: the paper's patch protocol (Tables 1 and 2) on a cohort's test split,
    whole held-out volumes with DTI errors, and real scans degraded then super-resolved.

    Evaluating a model on a subject that trained or selected it is refused.
    """

    from csrdmri.evaluation.collect import EvaluationRequest
    from csrdmri.evaluation.patch_protocol import parse_methods
    from csrdmri.evaluation.report import run_report
    from csrdmri.inference.upsampler import Options

    options = Options(
        device, precision, consistency=consistency, safeguard=safeguard, input_noise=input_noise
    )
    request = EvaluationRequest(
        methods=parse_methods(models),
        cohort=data,
        scales=parse_list(scales, "--scales"),
        patches=patches,
        seed=seed,
        split=split,
        volume_subjects=volume_subjects,
        volume_scales=parse_list(volume_scales, "--volume-scales"),
        directions=directions or None,
        real=[Path(p.strip()) for p in (real or "").split(",") if p.strip()],
        real_scales=parse_list(real_scales, "--real-scales"),
        angular=angular,
        degradation=degradation,
        slab=slab,
        options=options,
        out=out,
        command=" ".join(["csrdmri", *sys.argv[1:]]),
    )
    table = run_report(request)
    if table:
        typer.echo(table)
    if out is not None:
        typer.echo(f"wrote {out / 'report.md'}")


@app.command()
@user_errors
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, log.csv, loss.png.")],
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            help="Training data: a cohort folder (cohort.json split), a folder of subjects or one "
            "scan's folder (HCP, BIDS or FSL-style). Repeat to mix sources, e.g. a phantom cohort "
            "and your own scans. Not used by csr-qspace, which simulates its acquisitions.",
        ),
    ] = None,
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
    steps: Annotated[
        int | None,
        typer.Option(help="Optimisation steps of a csr-qspace run (default 6000; extends a resumed run)."),
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
            "instead of a random initialisation: fine-tuning. The model must match the run's "
            "(csr-qspace: or hold it and more, e.g. a path added; the new parts start as built).",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="csr-qspace: processes simulating the training batches ahead, for machines with "
            "cores to spare (a GPU's host); 0: one thread beside the training. The batches are the same.",
        ),
    ] = 0,
) -> None:
    """Train a model on the paper's patch protocol (validation PSNR against tricubic), or the
    joint q-space model (--model csr-qspace) on phantom acquisitions simulated on the fly
    (validation: the raw-intensity gain over cubic on a subject not trained on).

    Runs data-parallel when started by torchrun, e.g.
    ``torchrun --nproc_per_node=4 $(which csrdmri) train --preset paper ...``
    (NCCL on GPUs, gloo on CPU; the batch is split over the processes).
    """
    from csrdmri.workflows.train import train_run

    shares = None
    if weights is not None:
        try:
            shares = [float(w) for w in weights.split(",")]
        except ValueError:
            raise InputError(f"--weights must be numbers separated by commas, got {weights!r}") from None
    scores = train_run(
        data or [],
        out,
        preset=preset,
        model=model,
        config=config,
        epochs=epochs,
        steps=steps,
        resume=resume,
        device=device,
        cache=cache,
        weights=shares,
        init=init,
        workers=workers,
    )
    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"finished {out}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
