"""The report's tables: which paper row a method reproduces, ablations, ordering."""

from __future__ import annotations

from csrdmri.evaluate import Method, Scores
from csrdmri.infer import Upsampler
from csrdmri.report import ablation, paper_row, ranking, table1, table2


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
