"""Commands on many subjects: ``bids`` (a BIDS App)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from csrdmri.cli.app import app, parse_triplet, user_errors
from csrdmri.cli.options import (
    AdaptStepsOpt,
    ChunkOpt,
    ConsistencyOpt,
    DeviceOpt,
    InputNoiseOpt,
    MarginOpt,
    MaxOutputOpt,
    ModelOpt,
    OutBvecsOpt,
    OutDirectionsOpt,
    OutsideOpt,
    PrecisionOpt,
    SafeguardOpt,
    ScaleOpt,
    SeedOpt,
    TileOpt,
    VoxelSizeOpt,
)
from csrdmri.core.errors import InputError


def participant_label_values(given: list[str] | None, extra: list[str]) -> list[str] | None:
    """The labels of ``--participant-label 01 02``: click takes the first as the option's value
    and leaves the others as extra arguments; anything extra without the option is refused."""
    if extra and not given:
        raise InputError(f"unexpected argument(s): {' '.join(extra)}")
    return [*given, *extra] if given else None


@app.command(context_settings={"allow_extra_args": True})
@user_errors
def bids(
    ctx: typer.Context,
    bids_dir: Annotated[
        Path, typer.Argument(help="A BIDS dataset (raw, or preprocessed derivatives such as QSIPrep's).")
    ],
    output_dir: Annotated[
        Path, typer.Argument(help="The derivative dataset to write (e.g. BIDS_DIR/derivatives/csrdmri).")
    ],
    analysis_level: Annotated[str, typer.Argument(help="'participant' (the only level).")],
    participant_label: Annotated[
        list[str] | None,
        typer.Option(
            "--participant-label",
            "--participant_label",
            help="Participants to process, with or without 'sub-' (--participant-label 01 02, as "
            "BIDS Apps take them); default: all.",
        ),
    ] = None,
    scale: ScaleOpt = None,
    voxel_size: VoxelSizeOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = "cpu",
    precision: PrecisionOpt = "auto",
    tile: TileOpt = 130,
    chunk: ChunkOpt = 16384,
    margin: MarginOpt = 2,
    outside: OutsideOpt = "tricubic",
    consistency: ConsistencyOpt = "off",
    input_noise: InputNoiseOpt = "auto",
    safeguard: SafeguardOpt = "on",
    adapt_steps: AdaptStepsOpt = 0,
    seed: SeedOpt = 0,
    max_output_gb: MaxOutputOpt = 64.0,
    out_bvecs: OutBvecsOpt = None,
    out_directions: OutDirectionsOpt = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Series processed at once on a local Dask cluster (each worker gets cores / N "
            "torch threads); 1: one after another in this process."
        ),
    ] = 1,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Address of a running Dask scheduler (tcp://host:port, e.g. from dask-jobqueue "
            "on SLURM) to send the series to, instead of a local cluster."
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            help="Torch threads per series (default: with --workers, the cores shared out among "
            "the workers; else torch's default). Runs with the same threads per series write "
            "the same bytes."
        ),
    ] = None,
    mrtrix_grad: Annotated[
        bool, typer.Option("--mrtrix-grad", help="Also write MRtrix3's .b gradient file beside each output.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Redo series whose output exists.")] = False,
) -> None:
    """A BIDS App: super-resolve every DWI series of the chosen participants into BIDS derivatives.

    For each participant (and session, run, acquisition) it finds the DWI series and the best
    T1w (same session first), runs --model with it — or, when that model cannot run the series
    (it needs a T1w the participant does not have, or b = 1000 volumes the series lacks), the
    joint q-space model (said in the log and the sidecar's model_choice) — and
    writes OUTPUT_DIR/sub-X(/ses-Y)/dwi/..._space-dwi_res-<voxel size>_desc-csrdmri_dwi.nii.gz
    with .bval, .bvec and a .json sidecar, plus OUTPUT_DIR/dataset_description.json. Inputs are
    never modified; finished series are skipped on a rerun (unless --force); a failing series is
    reported and the others go on (exit status 1 then). Logs: OUTPUT_DIR/logs/.
    """
    from csrdmri.inference.upsampler import Options
    from csrdmri.workflows.bids import Settings, run_bids
    from csrdmri.workflows.upsample import requested_directions

    labels = participant_label_values(participant_label, ctx.args)
    settings = Settings(
        scale=parse_triplet(scale, "--scale"),
        voxel_size=parse_triplet(voxel_size, "--voxel-size"),
        model=model,
        options=Options(device, precision, tile, chunk, margin, outside, consistency, safeguard, input_noise),
        force=force,
        mrtrix=mrtrix_grad,
        max_output_gb=max_output_gb,
        threads=threads,
        adapt_steps=adapt_steps,
        seed=seed,
        out_directions=requested_directions(out_bvecs, out_directions),
    )
    outcomes = run_bids(
        bids_dir,
        output_dir,
        analysis_level,
        labels,
        settings,
        workers=workers,
        scheduler=scheduler,
        command=" ".join(["csrdmri", *sys.argv[1:]]),
    )
    width = max(len(o.series) for o in outcomes)
    for o in outcomes:
        detail = o.message if o.status == "failed" else f"{o.model or ''} {o.output or ''}".strip()
        typer.echo(f"{o.series:<{width}}  {o.status:<7}  {detail}")
    failed = sum(o.status == "failed" for o in outcomes)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    typer.echo(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(outcomes)} series")
    if failed:
        raise typer.Exit(1)
