"""Training: configurations and presets, the training data, and one resumable loop for every
model (data-parallel under torchrun).

``config`` (TrainConfig, presets) · ``data`` (subject caches) · ``sources`` (what ``--data``
holds, sampling weights) · ``distributed`` (torchrun) · ``state`` (a run's weights, optimiser
and progress) · ``validation`` · ``runlog`` (log.csv, loss.png) · ``loop`` (:func:`train`).
"""

from csrdmri.training.config import CPU_INR, PRECISIONS, PRESETS, TrainConfig, preset_for
from csrdmri.training.data import prepare_subject
from csrdmri.training.loop import train
from csrdmri.training.sources import check_weights, subject_weights

__all__ = [
    "CPU_INR",
    "PRECISIONS",
    "PRESETS",
    "TrainConfig",
    "check_weights",
    "prepare_subject",
    "preset_for",
    "subject_weights",
    "train",
]
