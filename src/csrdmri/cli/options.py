"""Options shared by the commands that upsample (``upsample``, ``bids``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from csrdmri.weights import DEFAULT_MODEL, FALLBACK_MODEL, shipped

ScaleOpt = Annotated[
    str | None, typer.Option(help="Scale factor: one number (2, 2.4) or one per axis (2,2,1).")
]
VoxelSizeOpt = Annotated[
    str | None, typer.Option(help="Target voxel size in mm: one number (1.25) or one per axis.")
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        help=f"'tricubic', a shipped model ({', '.join(shipped())}), a .safetensors checkpoint "
        f"or a training run folder. Default: {DEFAULT_MODEL}, or {FALLBACK_MODEL} for a series it "
        "cannot run (no T1w, no b = 1000 shell, new directions asked for; said in the log and the "
        "sidecar's model_choice).",
        show_default=False,
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="Torch device: cpu, cuda or cuda:N.")]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        help="auto (bf16 for the joint q-space model on a GPU with bf16, a CPU with AMX or an AMD CPU "
        "with AVX-512 BF16: < 0.1 % of the range from fp32, 1.3-1.5x faster; else fp32), fp32, or "
        "bf16 / fp16 (CUDA) autocast for the model."
    ),
]
TileOpt = Annotated[
    int,
    typer.Option(
        help="Largest encoder tile side in input voxels, halo included: a tile holds at most "
        "N³ voxels (memory vs. speed; must exceed twice the model's receptive radius)."
    ),
]
ChunkOpt = Annotated[int, typer.Option(help="Output voxels decoded at once (memory vs. speed).")]
MarginOpt = Annotated[int, typer.Option(help="Input voxels by which the brain mask is dilated.")]
OutsideOpt = Annotated[str, typer.Option(help="Output outside the dilated mask: 'tricubic' or 'zero'.")]
ConsistencyOpt = Annotated[
    str,
    typer.Option(
        help="Data consistency with the input: 'off', 'kspace' (each output volume's central "
        "k-space block replaced by the input's, the rest kept) or 'image' (each output volume "
        "moved by the least change that makes its tricubic downsampling equal the input)."
    ),
]
InputNoiseOpt = Annotated[
    str,
    typer.Option(
        help="The input's noise under the data consistency: 'kept' (upsampled like the signal), "
        "'tensor' (each input DWI's residual against its shell's tensor fit, upsampled, is taken "
        "out before the consistency step, so only the part the operator sees comes back; needs "
        "--consistency image or kspace), 'checked' (the same, each volume's residual weighted by "
        "how far its removal helped on the input degraded once more: less where the tensor does "
        "not fit, e.g. uncorrected motion) or 'auto' (the default: checked with a consistency)."
    ),
]
SafeguardOpt = Annotated[
    str,
    typer.Option(
        help="Weigh the model's correction of each shell by how much it helps on the input "
        "itself, degraded once more by the scale, tricubically and in k-space (the smaller "
        "weight: 0 is cubic, 1 the model; in the sidecar, and a warning when below 1); about "
        "2/scale³ more time. 'on' (the default, with every model) or 'off'."
    ),
]
AdaptStepsOpt = Annotated[
    int,
    typer.Option(
        help="Fine-tune a copy of the model on this scan for N steps first (self-supervised: "
        "its own patches degraded by the scale; about half a second per step on 2 CPU cores). "
        "0: off (the default: on two real scans it has not helped yet, docs/results.md)."
    ),
]
SeedOpt = Annotated[int, typer.Option(help="Seed of --adapt-steps (same seed, same output).")]
MaxOutputOpt = Annotated[
    float,
    typer.Option(
        help="Largest output image allowed, GB of float32 (a guard against typos such as "
        "--scale 20); the same space is needed on disk beside --out while it is computed."
    ),
]
OutBvecsOpt = Annotated[
    Path | None,
    typer.Option(
        help="Angular super-resolution: write these gradient directions (an FSL .bvec file, "
        "3 rows or 3 columns) for every shell of at least 6 directions, instead of the "
        "acquired ones (b0s and smaller shells kept); the .bval/.bvec written say which. "
        "Tricubic or csr-qspace.",
    ),
]
OutDirectionsOpt = Annotated[
    int | None,
    typer.Option(help="Like --out-bvecs, with this many directions spread evenly on the sphere."),
]
