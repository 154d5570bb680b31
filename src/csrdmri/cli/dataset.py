"""Commands on one dataset: ``info``, ``upsample``, ``compare``, ``figure``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from csrdmri.cli.app import BvalOpt, BvecOpt, InputArg, app, parse_triplet, user_errors
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
    from csrdmri.dmri.info import describe, format_facts
    from csrdmri.io.layout import find_dataset

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
    scale: ScaleOpt = None,
    voxel_size: VoxelSizeOpt = None,
    model: ModelOpt = None,
    t1: Annotated[
        Path | None, typer.Option("--t1", help="T1-weighted image (any grid: resampled by the affines).")
    ] = None,
    mask: Annotated[
        Path | None,
        typer.Option(help="Brain mask on the DWI grid; default: the dataset's, else median_otsu on the b0."),
    ] = None,
    bval: BvalOpt = None,
    bvec: BvecOpt = None,
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
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")] = False,
    out_bvecs: OutBvecsOpt = None,
    out_directions: OutDirectionsOpt = None,
) -> None:
    """Super-resolve every volume of a DWI series to a new scale or voxel size (field of view kept).

    PATH is a DWI NIfTI (with .bval/.bvec beside it or given), or a BIDS, HCP or FSL-style
    subject folder. The default model is the CSR-dMRI weights shipped with the package, which
    read the subject's T1w (--t1, or the one found in a BIDS/HCP folder) and b = 1000 volumes;
    for a series without either (or with --out-directions) the joint q-space model
    csr-qspace-cpu runs instead (every shell of b 500–3000 in one pass, with the T1w when there
    is one, without otherwise), and the log and the sidecar say so. A model named with --model
    that cannot run the series is refused.
    """
    from csrdmri.inference.upsampler import Options
    from csrdmri.workflows.upsample import requested_directions, upsample_dataset

    result = upsample_dataset(
        path,
        out,
        scale=parse_triplet(scale, "--scale"),
        voxel_size=parse_triplet(voxel_size, "--voxel-size"),
        model=model,
        t1=t1,
        mask=mask,
        bval=bval,
        bvec=bvec,
        options=Options(device, precision, tile, chunk, margin, outside, consistency, safeguard, input_noise),
        adapt_steps=adapt_steps,
        seed=seed,
        max_output_gb=max_output_gb,
        force=force,
        out_directions=requested_directions(out_bvecs, out_directions),
    )
    shape = " × ".join(map(str, result.grid.shape))
    zooms = " × ".join(f"{z:.4g}" for z in result.grid.zooms)
    guide = f", guided by the T1w {result.t1w}" if result.t1w else ""
    typer.echo(
        f"wrote {result.out}: {shape} × {result.volumes} volumes, voxel {zooms} mm ({result.model}{guide})"
    )


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
    from csrdmri.evaluation.figures import comparison

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
    from csrdmri.evaluation.figures import overview
    from csrdmri.io.layout import find_dataset

    if out.suffix.lower() != ".png":
        raise InputError(f"--out {out} must be a .png file")
    out.parent.mkdir(parents=True, exist_ok=True)
    typer.echo(f"wrote {overview(find_dataset(path, bval, bvec, t1), out, slice_z)}")
