"""Weights shipped inside the package, each with a model card (``<name>.md``) beside it."""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
#: The model `csrdmri upsample` uses unless told otherwise.
DEFAULT_MODEL = "csr-dmri-cpu"
#: What the default gives way to for a series it cannot run (no T1w, no b ≈ 1000 shell, new
#: gradient directions asked for): the joint q-space model, which needs none of these.
FALLBACK_MODEL = "csr-qspace-cpu"


def shipped() -> dict[str, Path]:
    """Shipped checkpoints by name (the file name without ``.safetensors``)."""
    return {p.stem: p for p in sorted(FOLDER.glob("*.safetensors"))}
