"""The evaluation report: run the protocols an :class:`~csrdmri.evaluation.collect.EvaluationRequest`
asks for, then write ``report.md`` (tables beside the paper's published numbers), the figures
and ``results.json``.

The parts: :mod:`~csrdmri.evaluation.collect` (request, protocols, results),
:mod:`~csrdmri.evaluation.tables`, :mod:`~csrdmri.evaluation.report_markdown`,
:mod:`~csrdmri.evaluation.report_figures` and :mod:`~csrdmri.evaluation.results_json`.
"""

from __future__ import annotations

import json
from pathlib import Path

from csrdmri.evaluation.collect import EvaluationRequest, EvaluationResults, run_protocols
from csrdmri.evaluation.report_figures import draw_figures
from csrdmri.evaluation.report_markdown import report_markdown
from csrdmri.evaluation.results_json import results_record
from csrdmri.evaluation.tables import dti_table, table1, volume_table
from csrdmri.io.nifti import atomic_path


def summary_tables(results: EvaluationResults) -> str:
    """The measured tables, as markdown: Table 1 (when the patch protocol ran), then the
    PSNR / SSIM and DTI tables of the whole volumes and of the real scans (when any)."""
    tables = [table1(results.patch, results.methods, results.data_label)] if results.patch else []
    tables += [f(cases) for cases in results.case_groups.values() if cases for f in (volume_table, dti_table)]
    return "\n\n".join(tables)


def write_report(out: Path, command: str, results: EvaluationResults) -> Path:
    """Write ``figures/*.png``, ``results.json`` and ``report.md`` of ``results`` into ``out``
    (created).

    Returns
    -------
    Path
        The report, ``out/report.md``.
    """
    figures = draw_figures(results, out)
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results_record(command, results), indent=2) + "\n")
    report = out / "report.md"
    with atomic_path(report) as tmp:
        tmp.write_text(report_markdown(command, results, figures))
    return report


def run_report(request: EvaluationRequest) -> str:
    """Run the protocols of ``request``, write the report into ``request.out`` when given, and
    return the measured tables (:func:`summary_tables`).

    Raises
    ------
    InputError
        As :func:`csrdmri.evaluation.collect.run_protocols`.
    """
    results = run_protocols(request)
    if request.out is not None:
        write_report(request.out, request.command, results)
    return summary_tables(results)
