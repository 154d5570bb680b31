"""The report: which paper row a method reproduces, ablations, ordering; the request, the
files written from results, and `csrdmri evaluate --device`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import assert_user_error, run

from csrdmri.core.errors import InputError
from csrdmri.evaluation import collect
from csrdmri.evaluation.collect import EvaluationRequest, EvaluationResults
from csrdmri.evaluation.patch_protocol import Method, Scores
from csrdmri.evaluation.report import run_report, summary_tables, write_report
from csrdmri.evaluation.tables import ablation, paper_row, ranking, table1, table2
from csrdmri.evaluation.volume_protocol import VolumeCase, VolumeScores
from csrdmri.inference.upsampler import Upsampler


def method(architecture: str | None, use_t1: bool = False, fft: float = 0.0) -> Method:
    """A method whose checkpoint metadata says what it is (no weights: the tables need none)."""
    if architecture is None:
        return Method()
    meta = {"model": {"architecture": architecture, "use_t1": use_t1}, "training": {"fft_weight": fft}}
    return Method((Upsampler(architecture, meta=meta),))


def scores(psnr_by_scale: dict[float, float]) -> dict[float, Scores]:
    return {s: Scores([p - 0.1, p + 0.1], [0.9, 0.9]) for s, p in psnr_by_scale.items()}


def test_methods_are_matched_to_the_paper_by_their_checkpoint():
    assert paper_row(method(None)) == "bicubic"
    assert paper_row(method("inr", use_t1=True, fft=0.01)) == "csr-dmri"
    assert paper_row(method("inr")) == "arssr"
    assert paper_row(method("dcsrn")) == "dcsrn" and paper_row(method("rescnn3d")) == "rescnn3d"
    assert paper_row(method("rdn-fixed")) is None
    assert ablation(method("rdn-fixed")) == "baseline"
    assert ablation(method("inr")) == "m1"
    assert ablation(method("rdn-fixed", use_t1=True)) == "m2"
    assert ablation(method("rdn-fixed", fft=0.01)) == "m3"
    assert ablation(method("inr", use_t1=True, fft=0.01)) == "csr-dmri"
    assert ablation(method("inr", use_t1=True)) is None  # not a setting of Table 2
    assert ablation(method(None)) is None and ablation(method("dcsrn")) is None


def test_tables_put_measured_rows_beside_the_papers_and_rank_them():
    methods = {"tri": method(None), "mine": method("inr", use_t1=True, fft=0.01), "base": method("rdn-fixed")}
    results = {
        "tri": scores({2.0: 25.0, 2.4: 24.0}),
        "mine": scores({2.0: 26.0, 2.4: 23.0}),
        "base": scores({2.0: 25.5, 2.4: 24.5}),
    }
    first = table1(results, methods, "phantom")
    assert "| mine | phantom | 26.00 ± 0.10 / 0.9000 ± 0.0000 | 23.00 ± 0.10 / 0.9000 ± 0.0000 |" in first
    assert "| CSR-dMRI (paper) | HCP (published) | 27.36 / 0.9458 | 27.12 / 0.9410 |" in first
    assert "Baseline" not in first and "ArSSR (paper)" not in first
    second = table2(results, methods, "phantom")
    assert "| Baseline | × | × | × | base | phantom | 25.50 ± 0.10" in second
    assert "| M2 (paper) | × | ✓ | × | – | HCP (published) | 27.05 / 0.9444 | 26.96 / 0.9408 |" in second
    assert table2({"tri": results["tri"]}, methods, "phantom") == ""  # no ablation measured
    order = ranking(results, methods)
    assert "| 2× | CSR-dMRI (mine, 26.00) > Bicubic (tri, 25.00) | CSR-dMRI > Bicubic | yes |" in order
    assert "| 2.4× | Bicubic (tri, 24.00) > CSR-dMRI (mine, 23.00) | CSR-dMRI > Bicubic | no |" in order


def synthetic_results() -> EvaluationResults:
    """Patch scores of tricubic at 2× with its example patch, and one whole-volume case whose
    dataset name holds a slash (no protocol run: arrays made up)."""
    rng = np.random.default_rng(0)
    hr = rng.random((20, 20, 20))
    example = {"HR": hr, "LR": rng.random((10, 10, 10)), "tri": hr + 0.01}
    mask = np.zeros((12, 12, 8), bool)
    mask[2:10, 2:10, 2:6] = True
    truth, fa = rng.random(mask.shape), rng.random(mask.shape)
    dti = dict.fromkeys(("fa_mae_brain", "fa_mae_wm", "md_mae_brain", "md_mae_wm"), 0.01)
    dti |= {"angle_median_wm": 10.0, "angle_mean_wm": 12.0}
    case = VolumeCase("site/s1", 2.0, (6, 6, 4), mask.shape, truth, fa, rng.random((6, 6, 4)), mask)
    raw = ([30.0, 32.0], [0.95, 0.93])
    case.methods["tri"] = VolumeScores([20.0, 22.0], [0.9, 0.8], dti, fa + 0.1, truth + 0.1, *raw)
    case.skipped["csr"] = "needs a T1w; the dataset has none"
    return EvaluationResults(
        methods={"tri": method(None)},
        patch={"tri": scores({2.0: 25.0})},
        examples={2.0: example},
        volume_cases=[case],
        real_cases=[],
        data_label="phantom (test, 1 subject × 2 patches)",
        protocol={"split": "test"},
    )


def test_the_report_holds_the_tables_figures_and_json_of_the_results(tmp_path):
    results = synthetic_results()
    report = write_report(tmp_path / "out", "csrdmri evaluate --models tri", results)
    text = report.read_text()
    assert report == tmp_path / "out" / "report.md" and "Command: `csrdmri evaluate --models tri`" in text
    for part in ("## Table 1: paper protocol", "| Bicubic (paper) | HCP (published) | 25.89 / 0.9075 |"):
        assert part in text
    assert "## Whole volumes" in text and "## Real scans" not in text and "## Table 2" not in text
    assert "| site/s1 | 2× | 6×6×4 → 12×12×8 | csr | not run: needs a T1w; the dataset has none | – |" in text
    # Raw scores first (the headline), then S/S0; no gain without a tricubic row.
    assert "| tri | 31.00 ± 1.00 / 0.9400 ± 0.0100 | – | – | 21.00 ± 1.00 / 0.8500 ± 0.0500 | – |" in text
    for name in ("patch-2x", "volume-site-s1-2x", "volume-site-s1-2x-fa"):  # plain file names
        assert f"(figures/{name}.png)" in text and (tmp_path / "out" / "figures" / f"{name}.png").is_file()
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["command"] == "csrdmri evaluate --models tri" and saved["protocol"] == {"split": "test"}
    assert saved["methods"]["tri"]["sources"] == ["tricubic"]
    assert saved["paper_protocol"]["tri"]["2"]["psnr"] == pytest.approx([24.9, 25.1])
    (whole,) = saved["whole_volume"]
    assert whole["data"] == "site/s1" and whole["methods"]["tri"]["volumes"] == 2
    assert whole["methods"]["tri"]["raw_psnr"] == [30.0, 32.0] and whole["raw_data_range"] == 1.0
    assert saved["real_scans"] == []
    tables = summary_tables(results)
    assert tables.startswith("| method | data | 2× PSNR / SSIM |") and "| site/s1 | 2× | tri |" in tables


def test_a_request_refuses_what_cannot_be_evaluated(tmp_path):
    methods = {"tricubic": method(None)}
    with pytest.raises(InputError, match="nothing to evaluate"):
        EvaluationRequest(methods=methods)
    with pytest.raises(InputError, match=r"volume scales must all be > 1, got \[1.0\]"):
        EvaluationRequest(methods=methods, cohort=tmp_path, volume_scales=(1.0,))
    with pytest.raises(InputError, match="patches per subject must not be negative"):
        EvaluationRequest(methods=methods, real=[tmp_path], patches=-1)
    assert EvaluationRequest(methods=methods, cohort=tmp_path).options.device == "cpu"


def test_run_report_runs_the_requested_protocols(small_cohort):
    request = EvaluationRequest(
        methods={"tricubic": method(None)}, cohort=small_cohort, scales=(2.0,), patches=1, volume_subjects=0
    )
    tables = run_report(request)
    assert "| tricubic | phantom (test, 1 subject × 1 patches) |" in tables
    assert "| Bicubic (paper) | HCP (published) | 25.89 / 0.9075 |" in tables


def test_evaluate_device_reaches_the_whole_volume_protocol(small_cohort, monkeypatch):
    devices = []

    def recording(*args, **kwargs):
        devices.append(args[4].device)
        return protocol(*args, **kwargs)

    protocol = collect.volume_protocol
    monkeypatch.setattr(collect, "volume_protocol", recording)
    args = ["--data", small_cohort, "--scales", "2", "--patches", "1", "--directions", "6"]
    result = run("evaluate", *args, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert devices == ["cpu"] and "| phantom001 | 2× | 36×44×36 → 72×87×72 | tricubic |" in result.stdout
    assert_user_error(run("evaluate", *args, "--device", "tpu9"), "unknown device 'tpu9'")
    if not torch.cuda.is_available():
        assert_user_error(run("evaluate", *args, "--device", "cuda"), "no CUDA GPU is available")
    assert devices == ["cpu"]  # refused before any protocol ran
