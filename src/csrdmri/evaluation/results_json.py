"""The content of ``results.json``: the protocol settings, the methods' sources and every
measured number (per patch and per volume, with their summaries)."""

from __future__ import annotations

from csrdmri import __version__
from csrdmri.evaluation.collect import EvaluationResults
from csrdmri.evaluation.patch_protocol import Scores
from csrdmri.evaluation.volume_protocol import VolumeCase, VolumeScores


def _scores_record(scores: Scores | VolumeScores) -> dict:
    raw = {}
    if isinstance(scores, VolumeScores):
        raw = {"raw_psnr": scores.raw_psnr, "raw_ssim": scores.raw_ssim}
    return {**scores.summary(), "psnr": scores.psnr, "ssim": scores.ssim, **raw}


def _case_record(case: VolumeCase) -> dict:
    return {
        "data": case.dataset,
        "scale": case.scale,
        "lr_shape": list(case.lr_shape),
        "hr_shape": list(case.hr_shape),
        "raw_data_range": case.raw_range,
        "methods": {label: _scores_record(s) for label, s in case.methods.items()},
        "skipped": case.skipped,
        "noise_free_signal": {
            "raw_psnr_mean": case.ceiling,
            "dti": case.ceiling_dti,
            "consistent_raw_psnr_mean": case.oracle,
            "consistent_dti": case.oracle_dti,
        },
    }


def results_record(command: str, results: EvaluationResults) -> dict:
    """``results`` as JSON-ready data, with the command line that produced them."""
    return {
        "command": command,
        "csrdmri_version": __version__,
        "protocol": results.protocol,
        "methods": {
            label: {
                "sources": [str(up.checkpoint or "tricubic") for up in m.upsamplers],
                "models": [up.meta.get("model") for up in m.upsamplers],
                "trainings": [up.meta.get("training") for up in m.upsamplers],
            }
            for label, m in results.methods.items()
        },
        "paper_protocol": {
            label: {f"{s:g}": _scores_record(scores) for s, scores in per_scale.items()}
            for label, per_scale in results.patch.items()
        },
        "whole_volume": [_case_record(c) for c in results.volume_cases],
        "real_scans": [_case_record(c) for c in results.real_cases],
        "angular": [_case_record(c) for c in results.angular_cases],
    }
