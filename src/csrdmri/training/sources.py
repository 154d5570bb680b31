"""What a run trains and validates on: the subjects of its ``--data`` sources and their weights."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from csrdmri.core.errors import InputError
from csrdmri.dmri.pairs import PreparedSubject
from csrdmri.io.layout import find_dataset
from csrdmri.training.data import prepare_subject


@dataclass(frozen=True)
class TrainingData:
    """The prepared subjects of a run and where they came from.

    Attributes
    ----------
    train, validation
        Training subjects (every source's, in order) and validation subjects (the sources'
        validation splits; the last training subject when none has one).
    probabilities
        Probability of drawing each training subject, shape (len(train),); ``None``: alike.
    sources
        One record per source for ``config.json`` and checkpoints: its path, its training
        subjects' names and, when the sources are weighted, its weight.
    """

    train: list[PreparedSubject]
    validation: list[PreparedSubject]
    probabilities: np.ndarray | None
    sources: list[dict]

    def digests(self) -> dict[str, str]:
        """DWI digest -> name of every subject that trains or selects the model."""
        return {s.digest: s.name for s in self.train + self.validation}


def subjects(data: Path, split: str, cache: Path) -> list[PreparedSubject]:
    """Prepared subjects of split ``split`` of the source ``data``.

    A cohort (``cohort.json``) gives its split's subjects; a plain folder gives subjects to the
    training split only: the one scan it holds, else each of its subject folders.
    """
    manifest = data / "cohort.json"
    if manifest.exists():
        folders = [data / n for n in json.loads(manifest.read_text())["split"].get(split, [])]
    elif split != "train":
        folders = []
    else:
        try:
            paths = find_dataset(data)
            return [prepare_subject(paths, cache, data.name)]
        except InputError:  # no scan of its own: a folder of subjects
            folders = sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [prepare_subject(find_dataset(f), cache, f.name) for f in folders]


def check_weights(weights: Sequence[float] | None, sources: int) -> None:
    """Refuse sampling weights that are not one finite, non-negative number per source."""
    if weights is None:
        return
    if len(weights) != sources:
        raise InputError(f"{len(weights)} sampling weights given for {sources} data source(s)", "weights")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise InputError(f"sampling weights must be ≥ 0 and not all 0, got {list(weights)}")


def subject_weights(sizes: list[int], weights: Sequence[float] | None) -> np.ndarray | None:
    """Probability of each subject when sources of ``sizes`` subjects are sampled in proportion
    to ``weights`` (one per source; a source's share split evenly over its subjects).
    ``None`` (every subject alike) for one source or no weights."""
    if weights is None or len(sizes) < 2:
        return None
    shares = [w / sum(weights) / n for w, n in zip(weights, sizes, strict=True) for _ in range(n)]
    return np.asarray(shares)


def prepare_data(sources: list[Path], weights: Sequence[float] | None, cache: Path) -> TrainingData:
    """Prepare (or reuse from ``cache``) the subjects of every source.

    Raises
    ------
    InputError
        When a subject cannot be read or a source has no training subject.
    """
    per_source = [subjects(data, "train", cache) for data in sources]
    train = [s for found in per_source for s in found]
    validation = [s for data in sources for s in subjects(data, "validation", cache)]
    for data, found in zip(sources, per_source, strict=True):
        if not found:
            raise InputError(f"no training subjects found in {data}")
    probabilities = subject_weights([len(found) for found in per_source], weights)
    records = [
        {"data": str(data), "subjects": [s.name for s in found]}
        | ({"weight": weights[i]} if probabilities is not None else {})
        for i, (data, found) in enumerate(zip(sources, per_source, strict=True))
    ]
    return TrainingData(train, validation or train[-1:], probabilities, records)
