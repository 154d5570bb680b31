"""The report's markdown tables: measured rows beside the paper's published numbers.

Every measured row says on which data it was measured; the paper's rows are labelled
"paper" / "HCP (published)" and are never mixed with measured numbers. Cells are
``PSNR ± sd / SSIM ± sd`` (dB / unitless, sd over patches or volumes).

Which paper row a method belongs to is read from its checkpoint, not from its label: an INR
with the T1w is CSR-dMRI, without it ArSSR; the ``rdn-fixed`` models are Table 2's "INR off"
rows; the FFT loss is the training option ``fft_weight``.
"""

from __future__ import annotations

from collections.abc import Sequence

from csrdmri.evaluation.paper import TABLE1, TABLE2
from csrdmri.evaluation.patch_protocol import Method, Scores
from csrdmri.evaluation.volume_protocol import VolumeCase

#: The paper's Table 1 rows in its order, with their display names.
PAPER_NAMES = {
    "bicubic": "Bicubic",
    "dcsrn": "DCSRN",
    "rescnn3d": "ResCNN3D",
    "arssr": "ArSSR",
    "csr-dmri": "CSR-dMRI",
}
#: Table 2's settings with their display names.
SETTING_NAMES = {"baseline": "Baseline", "m1": "M1", "m2": "M2", "m3": "M3", "csr-dmri": "CSR-dMRI"}
#: The row of the noise-free signal made consistent with the input (phantoms; the ceiling).
_CONSISTENT = "noise-free signal, consistent with the input"


def paper_row(method: Method) -> str | None:
    """The Table 1 row (key of :data:`csrdmri.evaluation.paper.TABLE1`) a method reproduces, if any."""
    model = method.meta.get("model")
    if model is None:
        return "bicubic"  # tricubic: the paper's "Bicubic" is cubic interpolation in 3D
    arch = model.get("architecture")
    if arch == "inr":
        return "csr-dmri" if model.get("use_t1") else "arssr"
    return arch if arch in ("dcsrn", "rescnn3d") else None


def ablation(method: Method) -> str | None:
    """The Table 2 setting (key of :data:`csrdmri.evaluation.paper.TABLE2`) a method reproduces, if any."""
    model = method.meta.get("model")
    if model is None or model.get("architecture") not in ("inr", "rdn-fixed"):
        return None
    flags = (
        model["architecture"] == "inr",
        bool(model.get("use_t1")),
        float(method.meta.get("training", {}).get("fft_weight", 0.0)) > 0,
    )
    return next((key for key, (setting, _) in TABLE2.items() if setting == flags), None)


def ordered_scales(scales: Sequence[float]) -> list[float]:
    """Integer scales first (2, 3, 4), then the others (2.4): the paper's column order."""
    return sorted(set(scales), key=lambda s: (s != int(s), s))


def _measured_scales(results: dict[str, dict[float, Scores]]) -> list[float]:
    return ordered_scales([s for per_scale in results.values() for s in per_scale])


def _cell(summary: dict, prefix: str = "") -> str:
    """``PSNR ± sd / SSIM ± sd`` of a summary (``prefix`` "raw_": of the raw scores; "–" when
    there are none)."""
    if f"{prefix}psnr_mean" not in summary:
        return "–"
    return (
        f"{summary[prefix + 'psnr_mean']:.2f} ± {summary[prefix + 'psnr_std']:.2f} / "
        f"{summary[prefix + 'ssim_mean']:.4f} ± {summary[prefix + 'ssim_std']:.4f}"
    )


def _gain(summary: dict, base: dict | None, prefix: str = "") -> str:
    """The PSNR gain over the tricubic row's, signed, in dB ("–" without both)."""
    key = f"{prefix}psnr_mean"
    return f"{summary[key] - base[key]:+.2f}" if base is not None and key in summary and key in base else "–"


def _clean(summary: dict, base: dict | None) -> str:
    """Raw PSNR against a phantom's noise-free signal and its gain over tricubic ("–" on real scans)."""
    if "clean_psnr_mean" not in summary:
        return "–"
    gain = (
        f" ({summary['clean_psnr_mean'] - base['clean_psnr_mean']:+.2f})"
        if base and "clean_psnr_mean" in base
        else ""
    )
    return f"{summary['clean_psnr_mean']:.2f}{gain}"


def _paper_cells(table: dict[float, tuple[float, float]], scales: list[float]) -> str:
    return " | ".join(f"{table[s][0]:.2f} / {table[s][1]:.4f}" if s in table else "–" for s in scales)


def describe_training(training: dict | None) -> str:
    """A checkpoint's training in one cell: a cohort run (epochs) or a q-space run (steps on
    simulated acquisitions)."""
    if not training:
        return "–"
    if "epochs" in training:
        return (
            f"{training['model']}, {training['epochs']} epochs, scales {training['scale_range']}, "
            f"fft_weight {training['fft_weight']:g}"
        )
    return (
        f"{training['steps']} steps on {training['subjects']} phantom subjects' simulated "
        f"acquisitions, scales {training['scale_range']}"
    )


def methods_table(methods: dict[str, Method]) -> str:
    """One row per model of each method: its source, model configuration and training."""
    lines = ["| method | source | model | training |", "|---|---|---|---|"]
    for label, method in methods.items():
        for up in method.upsamplers:
            model = up.meta.get("model", {"architecture": "tricubic"})
            trained = describe_training(up.meta.get("training"))
            arch = ", ".join(f"{k}={v}" for k, v in model.items())
            lines.append(f"| {label} | {up.checkpoint or 'tricubic'} | {arch} | {trained} |")
    return "\n".join(lines)


def table1(results: dict[str, dict[float, Scores]], methods: dict[str, Method], data_label: str) -> str:
    """Measured rows (one per method, on ``data_label``), then the paper's rows of the Table 1
    methods that were measured."""
    scales = _measured_scales(results)
    lines = [
        "| method | data | " + " | ".join(f"{s:g}× PSNR / SSIM" for s in scales) + " |",
        "|" + "---|" * (len(scales) + 2),
    ]
    for label, per_scale in results.items():
        cells = " | ".join(_cell(per_scale[s].summary()) for s in scales)
        lines.append(f"| {label} | {data_label} | {cells} |")
    rows = {paper_row(methods[label]) for label in results if label in methods}
    for key, name in PAPER_NAMES.items():
        if key in rows:
            lines.append(f"| {name} (paper) | HCP (published) | {_paper_cells(TABLE1[key], scales)} |")
    return "\n".join(lines)


def table2(results: dict[str, dict[float, Scores]], methods: dict[str, Method], data_label: str) -> str:
    """Table 2: the measured methods that match an ablation setting, with the paper's row of
    each setting under them; empty when none matches."""
    scales = _measured_scales(results)
    tick = {True: "✓", False: "×"}
    lines = [
        "| setting | INR | T1w | ℓk | method | data | "
        + " | ".join(f"{s:g}× PSNR / SSIM" for s in scales)
        + " |",
        "|" + "---|" * (len(scales) + 6),
    ]
    found = False
    for key, (flags, paper) in TABLE2.items():
        flag_cells = " | ".join(tick[f] for f in flags)
        for label in (m for m in results if m in methods and ablation(methods[m]) == key):
            cells = " | ".join(_cell(results[label][s].summary()) for s in scales)
            lines.append(f"| {SETTING_NAMES[key]} | {flag_cells} | {label} | {data_label} | {cells} |")
            found = True
        lines.append(
            f"| {SETTING_NAMES[key]} (paper) | {flag_cells} | – | HCP (published) | "
            f"{_paper_cells(paper, scales)} |"
        )
    return "\n".join(lines) if found else ""


def ranking(results: dict[str, dict[float, Scores]], methods: dict[str, Method]) -> str:
    """Per scale, the Table 1 methods ordered by mean PSNR, and whether that is the paper's
    order (CSR-dMRI > ArSSR > ResCNN3D > DCSRN > Bicubic, restricted to the rows measured).
    A row measured by several methods is represented by the first of them in ``results``."""
    lines = ["| scale | measured order (PSNR, best first) | paper's order | same? |", "|---|---|---|---|"]
    for s in _measured_scales(results):
        first: dict[str, tuple[float, str]] = {}
        for label, per_scale in results.items():
            row = paper_row(methods[label]) if label in methods else None
            value = per_scale[s].summary()["psnr_mean"]
            if row is not None and row not in first:
                first[row] = (value, label)
        if len(first) < 2:
            continue
        measured = sorted(first, key=lambda r: -first[r][0])
        paper = sorted(first, key=lambda r: -TABLE1[r][s][0]) if all(s in TABLE1[r] for r in first) else []
        text = " > ".join(f"{PAPER_NAMES[r]} ({first[r][1]}, {first[r][0]:.2f})" for r in measured)
        paper_text = " > ".join(PAPER_NAMES[r] for r in paper) or "–"
        same = "yes" if measured == paper else ("no" if paper else "–")
        lines.append(f"| {s:g}× | {text} | {paper_text} | {same} |")
    return "\n".join(lines)


def volume_table(cases: list[VolumeCase]) -> str:
    """PSNR / SSIM inside the brain (mean ± sd over the diffusion-weighted volumes) of the intensities as
    written (raw, the headline) and of S/S0, each with its gain over tricubic, one row per
    dataset, scale and method."""
    lines = [
        "| data | scale | LR grid → HR grid | method | raw PSNR ± sd / SSIM ± sd | Δ raw PSNR (dB) "
        "| raw PSNR vs noise-free (Δ) | S/S0 PSNR ± sd / SSIM ± sd | Δ S/S0 PSNR (dB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        base = case.methods["tricubic"].summary() if "tricubic" in case.methods else None
        grids = f"{'×'.join(map(str, case.lr_shape))} → {'×'.join(map(str, case.hr_shape))}"
        head = f"| {case.dataset} | {case.scale:g}× | {grids}"
        for label, scores in case.methods.items():
            s = scores.summary()
            raw = f"{_cell(s, 'raw_')} | {_gain(s, base, 'raw_')} | {_clean(s, base)}"
            cells = f"{raw} | {_cell(s)} | {_gain(s, base)}"
            lines.append(f"{head} | {label} | {cells} |")
        for label, why in case.skipped.items():
            lines.append(f"{head} | {label} | not run: {why} | – | – | – | – |")
        for label, value in (("noise-free signal", case.ceiling), (_CONSISTENT, case.oracle)):
            if value is not None:
                gain = f"{value - base['raw_psnr_mean']:+.2f}" if base else "–"
                lines.append(f"{head} | {label} | {value:.2f} | {gain} | – | – | – |")
    return "\n".join(lines)


def dti_table(cases: list[VolumeCase]) -> str:
    """FA and MD mean absolute errors and principal-direction angles against the truth's fit,
    and FA errors against the noise-free signal's fit (phantoms; "–" otherwise). On phantoms a
    "noise-free signal" row gives the errors of that signal's own fit against the noisy truth's:
    what recovering the anatomy exactly scores there (the truth's noise biases its FA up), and a
    row of that signal made consistent with the input (the part of the truth's noise the input
    determines put back: the raw-PSNR ceiling)."""
    lines = [
        "| data | scale | method | FA MAE brain | FA MAE WM | MD MAE brain (10⁻³ mm²/s) | "
        "MD MAE WM (10⁻³ mm²/s) | angle WM, median / mean (°) | vs noise-free: FA MAE brain / WM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        rows = [(label, scores.dti, scores.clean_dti) for label, scores in case.methods.items()]
        for label, dti in (("noise-free signal", case.ceiling_dti), (_CONSISTENT, case.oracle_dti)):
            if dti is not None:  # what recovering the anatomy (and the input's noise) scores
                rows.append((label, dti, None))
        for label, d, c in rows:
            clean = f"{c['fa_mae_brain']:.4f} / {c['fa_mae_wm']:.4f}" if c else "–"
            lines.append(
                f"| {case.dataset} | {case.scale:g}× | {label} | {d['fa_mae_brain']:.4f} | "
                f"{d['fa_mae_wm']:.4f} | {1e3 * d['md_mae_brain']:.4f} | {1e3 * d['md_mae_wm']:.4f} | "
                f"{d['angle_median_wm']:.2f} / {d['angle_mean_wm']:.2f} | {clean} |"
            )
    return "\n".join(lines)
