"""What a BIDS App run processes: every DWI series of the chosen participants, with its T1w.

The dataset is read with pybids (``BIDSLayout``, not validated: a dataset the validator would
complain about is still processed when its names parse). Raw BIDS: each ``*_dwi.nii[.gz]``
with its ``.bval``/``.bvec`` (BIDS inheritance applies), and the participant's T1w — of the
same session first, else of any session. A derivative dataset (``DatasetType: derivative`` in
``dataset_description.json``, e.g. QSIPrep's output) is read the same way, restricted to the
preprocessed series (``desc-preproc``), each with the brain mask beside it
(``desc-brain_mask`` with the same entities) and the preprocessed T1w.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from csrdmri.core.errors import InputError

NIFTI = [".nii.gz", ".nii"]
#: Entities of a DWI series that name its output, in the order BIDS writes them.
KEPT_ENTITIES = ("subject", "session", "acquisition", "direction", "run", "space")
SHORT = {
    "subject": "sub",
    "session": "ses",
    "acquisition": "acq",
    "direction": "dir",
    "run": "run",
    "space": "space",
}


@dataclass(frozen=True)
class Job:
    """One DWI series to super-resolve: its files and the entities that name its output."""

    dwi: Path
    bval: Path
    bvec: Path
    t1: Path | None = None
    mask: Path | None = None
    entities: dict = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return str(self.entities["subject"])

    @property
    def name(self) -> str:
        """The series' entities as a file name prefix, e.g. ``sub-01_ses-a_run-1``."""
        return entity_prefix(self.entities)


def entity_prefix(entities: dict) -> str:
    """``entities`` (of ``KEPT_ENTITIES``) as a file name prefix, in BIDS order."""
    return "_".join(f"{SHORT[k]}-{entities[k]}" for k in KEPT_ENTITIES if k in entities)


def participant_labels(labels: list[str] | None) -> list[str] | None:
    """Labels as given on the command line, with or without ``sub-`` (None: every participant)."""
    if not labels:
        return None
    return [label.removeprefix("sub-") for label in labels]


def is_derivative(root: Path) -> bool:
    """Whether ``root``'s ``dataset_description.json`` says it is a derivative dataset."""
    description = root / "dataset_description.json"
    if not description.exists():
        raise InputError(f"{root} is not a BIDS dataset: it has no dataset_description.json", "bids_dir")
    try:
        kind = json.loads(description.read_text()).get("DatasetType", "raw")
    except (json.JSONDecodeError, AttributeError):
        raise InputError(f"{description} is not a JSON object", "bids_dir") from None
    return kind == "derivative"


def find_jobs(root: str | Path, labels: list[str] | None = None) -> list[Job]:
    """Every DWI series of the participants ``labels`` (all when None) in the BIDS dataset
    ``root``, sorted by name. Refuses a label the dataset does not have and a selection with no
    DWI series."""
    from bids import BIDSLayout  # pybids: imported here, it takes a second

    root = Path(root)
    derivative = is_derivative(root)
    layout = BIDSLayout(root, validate=False, is_derivative=derivative)
    wanted = participant_labels(labels)
    subjects = layout.get_subjects()
    missing = sorted(set(wanted or ()) - set(subjects))
    if missing:
        raise InputError(
            f"no participant {', '.join(missing)} in {root} (it has {', '.join(sorted(subjects)) or 'none'})",
            "participant_label",
        )
    query = {"desc": "preproc"} if derivative else {}
    files = layout.get(subject=wanted or subjects, suffix="dwi", extension=NIFTI, **query)
    jobs = [job_for(layout, f, derivative) for f in files]
    if not jobs:
        raise InputError(
            f"no DWI series (*_dwi.nii[.gz]) for the selected participants in {root}", "bids_dir"
        )
    return sorted(jobs, key=lambda j: j.name)


def job_for(layout, dwi, derivative: bool) -> Job:
    """The :class:`Job` of one DWI file of ``layout``."""
    entities = dwi.get_entities()
    kept = {k: entities[k] for k in KEPT_ENTITIES if k in entities}
    bval, bvec = layout.get_bval(dwi.path), layout.get_bvec(dwi.path)
    if not bval or not bvec:
        raise InputError(f"{dwi.path} has no .bval/.bvec (BIDS requires both)", "bids_dir")
    mask = None
    if derivative:
        masks = layout.get(**kept, suffix="mask", desc="brain", extension=NIFTI, return_type="filename")
        mask = Path(masks[0]) if masks else None
    return Job(Path(dwi.path), Path(bval), Path(bvec), best_t1(layout, kept, derivative), mask, kept)


def best_t1(layout, entities: dict, derivative: bool) -> Path | None:
    """The participant's T1w: of the DWI's session first, else of any; the preprocessed one in a
    derivative dataset; the first by name when several qualify."""
    query = {"subject": entities["subject"], "suffix": "T1w", "extension": NIFTI, "return_type": "filename"}
    if derivative:
        query["desc"] = "preproc"
    candidates = []
    if "session" in entities:
        candidates = layout.get(session=entities["session"], **query)
    candidates = candidates or layout.get(**query)
    return Path(sorted(candidates)[0]) if candidates else None
