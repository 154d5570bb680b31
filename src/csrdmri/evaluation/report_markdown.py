"""The text of ``report.md``: the methods, the paper protocol's tables beside the paper's,
whole volumes and real scans with their DTI errors, and links to the figures."""

from __future__ import annotations

from datetime import date

from csrdmri import __version__
from csrdmri.core.degrade import DESCRIPTIONS
from csrdmri.dmri.dti import WM_FA
from csrdmri.evaluation.collect import EvaluationResults
from csrdmri.evaluation.report_figures import CaseFigures, ReportFigures
from csrdmri.evaluation.tables import (
    dti_table,
    methods_table,
    ordered_scales,
    ranking,
    table1,
    table2,
    volume_table,
)
from csrdmri.evaluation.volume_protocol import RAW_RANGE, VolumeCase

#: The sections of the whole-volume cases by kind: title and what the data are.
CASE_SECTIONS = {
    "volume": (
        "Whole volumes",
        "Held-out phantom subjects degraded whole and super-resolved back.",
    ),
    "real": (
        "Real scans (degradation-based)",
        "**Degradation-based evaluation**: each real scan, as acquired, plays the truth; it is "
        "downsampled by the scale and super-resolved back. This measures how well a method "
        "undoes that synthetic downsampling on real anatomy and noise, not how it performs on "
        "a scan acquired at the lower resolution.",
    ),
    "angular": (
        "Angular super-resolution (held-out directions)",
        "Each whole volume and real scan above, at its first scale, with only some directions of "
        "each shell kept (spread over the sphere) and degraded; the methods that can make new "
        "directions write the held-out ones, which are scored (DTI: over the b0s and the "
        "held-out directions). Tricubic is the cubic upsampling of each shell's SH fit.",
    ),
}


def _slab_text(slab: int | None) -> str:
    if slab is None:
        return ""
    return (
        f" Whole volumes and real scans are cut to their central slab of {slab} low-resolution slices "
        "through the third axis before degrading (`--slab`)."
    )


def _header(command: str, results: EvaluationResults) -> list[str]:
    degradation = results.protocol.get("degradation", "tricubic")
    return [
        "# csrdmri evaluation report",
        "",
        f"csrdmri {__version__}, {date.today().isoformat()}. Command: `{command}`",
        "",
        "Measured rows are labelled with their data; rows labelled *HCP (published)* are the "
        "paper's numbers, copied for comparison, never measured here. PSNR uses a data range of 1 "
        "on S/S0; SSIM a 7³ uniform window (scikit-image).",
        "",
        f"Low-resolution inputs (`--degradation {degradation}`): {DESCRIPTIONS[degradation]}. "
        f"Data consistency of the outputs with them (`--consistency`): "
        f"{results.protocol.get('consistency', 'off')}, the input's noise (`--input-noise`) "
        f"{results.protocol.get('input_noise', 'kept')}; safeguard (`--safeguard`): "
        f"{results.protocol.get('safeguard', 'off')}; precision (`--precision`): "
        f"{results.protocol.get('precision', 'fp32')}.{_slab_text(results.protocol.get('slab'))}",
        "",
        "## Methods",
        "",
        methods_table(results.methods),
    ]


def _patch_section(results: EvaluationResults, figures: ReportFigures) -> list[str]:
    """Tables 1 and 2 (the latter when an ablation setting was measured), the ranking, and the
    patch figures; nothing when the patch protocol did not run."""
    if not results.patch:
        return []
    lines = [
        "",
        "## Table 1: paper protocol",
        "",
        f"{results.data_label}; 40³ patches inside the brain, HR crop (10·s)³, LR 10³ by "
        f"{results.protocol.get('degradation', 'tricubic')} downsampling; mean ± sd over patches.",
        "",
        table1(results.patch, results.methods, results.data_label),
        "",
        ranking(results.patch, results.methods),
        "",
    ]
    second = table2(results.patch, results.methods, results.data_label)
    if second:
        lines += ["## Table 2: ablations", "", second, ""]
    lines += ["## Figures (paper protocol)", ""]
    lines += [f"![{s:g}× patch]({figures.patches[s]})" for s in ordered_scales(list(figures.patches))]
    return lines


def _cases_section(kind: str, cases: list[VolumeCase], figures: list[CaseFigures]) -> list[str]:
    """The PSNR / SSIM and DTI tables of one kind of case, and their figures; nothing without cases."""
    if not cases:
        return []
    title, note = CASE_SECTIONS[kind]
    lines = [
        "",
        f"## {title}",
        "",
        note + " Scored inside the truth's brain mask over every evaluated diffusion-weighted volume "
        f"(every shell): the intensities as written (raw; data range: the {RAW_RANGE:g}th percentile "
        "of the truth's mean b0 in the mask; on phantoms also against the noise-free signal), and "
        "S/S0 with each output divided by its own mean b0.",
        "",
        volume_table(cases),
        "",
        f"DTI: DIPY tensor fits (WLS) of the truth and of each output over the same volumes; "
        f"WM = truth FA > {WM_FA}. On phantoms also against the fit of the noise-free signal "
        "(its own WM): the noisy truth's FA is biased up by its noise; the row 'noise-free signal' "
        "is that fit scored against the noisy truth's, what recovering the anatomy exactly scores; "
        "the row 'noise-free signal, consistent with the input' adds back the part of the truth's "
        "noise the input determines (the raw-PSNR ceiling), scored the same way.",
        "",
        dti_table(cases),
        "",
    ]
    for case in figures:
        lines += [f"![{case.stem}]({case.signal})", f"![{case.stem} FA]({case.fa})", ""]
    return lines


def report_markdown(command: str, results: EvaluationResults, figures: ReportFigures) -> str:
    """The whole ``report.md`` of ``results`` (dated today), linking ``figures``.

    Parameters
    ----------
    command
        The command line that produced the results.
    results
        What the protocols measured.
    figures
        The drawn figures (:func:`csrdmri.evaluation.report_figures.draw_figures`).
    """
    lines = _header(command, results) + _patch_section(results, figures)
    for kind, cases in results.case_groups.items():
        lines += _cases_section(kind, cases, figures.cases[kind])
    return "\n".join(lines) + "\n"
