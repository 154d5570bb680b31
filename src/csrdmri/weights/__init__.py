"""Weights shipped inside the package, each with a model card (``<name>.md``) beside it."""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
#: The model `csrdmri upsample` uses unless told otherwise.
DEFAULT_MODEL = "csr-dmri-cpu"


def shipped() -> dict[str, Path]:
    """Shipped checkpoints by name (the file name without ``.safetensors``)."""
    return {p.stem: p for p in sorted(FOLDER.glob("*.safetensors"))}
