"""The evaluation report: runs the protocols asked for, then writes tables beside the paper's
published numbers, figures, and a JSON.

Every measured row says on which data it was measured; the paper's rows are labelled
"paper" / "HCP (published)" and are never mixed with measured numbers. Cells are
``PSNR ± sd / SSIM ± sd`` (dB / unitless, sd over patches or volumes).

Which paper row a method belongs to is read from its checkpoint, not from its label: an INR
with the T1w is CSR-dMRI, without it ArSSR; the ``rdn-fixed`` models are Table 2's "INR off"
rows; the FFT loss is the training option ``fft_weight``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
from tqdm import tqdm

from csrdmri import __version__
from csrdmri.dti import WM_FA
from csrdmri.errors import InputError
from csrdmri.evaluate import Method, Scores, cohort_split, paper_protocol
from csrdmri.figures import panel_grid
from csrdmri.infer import Options
from csrdmri.io import atomic_path, load_dwi
from csrdmri.layout import DatasetPaths, find_dataset
from csrdmri.paper import TABLE1, TABLE2
from csrdmri.resample import resample
from csrdmri.volume_protocol import VolumeCase, subset_series, volume_protocol

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


def paper_row(method: Method) -> str | None:
    """The Table 1 row (key of :data:`csrdmri.paper.TABLE1`) a method reproduces, if any."""
    model = method.meta.get("model")
    if model is None:
        return "bicubic"  # tricubic: the paper's "Bicubic" is cubic interpolation in 3D
    arch = model.get("architecture")
    if arch == "inr":
        return "csr-dmri" if model.get("use_t1") else "arssr"
    return arch if arch in ("dcsrn", "rescnn3d") else None


def ablation(method: Method) -> str | None:
    """The Table 2 setting (key of :data:`csrdmri.paper.TABLE2`) a method reproduces, if any."""
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


def _cell(summary: dict) -> str:
    return (
        f"{summary['psnr_mean']:.2f} ± {summary['psnr_std']:.2f} / "
        f"{summary['ssim_mean']:.4f} ± {summary['ssim_std']:.4f}"
    )


def _paper_cells(table: dict[float, tuple[float, float]], scales: list[float]) -> str:
    return " | ".join(f"{table[s][0]:.2f} / {table[s][1]:.4f}" if s in table else "–" for s in scales)


def table1(results: dict[str, dict[float, Scores]], methods: dict[str, Method], data_label: str) -> str:
    """Measured rows (one per method, on ``data_label``), then the paper's rows of the Table 1
    methods that were measured."""
    scales = ordered_scales([s for per_scale in results.values() for s in per_scale])
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
    scales = ordered_scales([s for per_scale in results.values() for s in per_scale])
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
    scales = ordered_scales([s for per_scale in results.values() for s in per_scale])
    lines = ["| scale | measured order (PSNR, best first) | paper's order | same? |", "|---|---|---|---|"]
    for s in scales:
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
    """PSNR / SSIM inside the brain (mean ± sd over b ≈ 1000 volumes) and the PSNR gain over
    tricubic, one row per dataset, scale and method."""
    lines = [
        "| data | scale | LR grid → HR grid | method | PSNR ± sd / SSIM ± sd | ΔPSNR vs tricubic (dB) |",
        "|---|---|---|---|---|---|",
    ]
    for case in cases:
        base = case.methods.get("tricubic")
        grids = f"{'×'.join(map(str, case.lr_shape))} → {'×'.join(map(str, case.hr_shape))}"
        for label, scores in case.methods.items():
            summary = scores.summary()
            gain = f"{summary['psnr_mean'] - base.summary()['psnr_mean']:+.2f}" if base is not None else "–"
            row = f"| {case.dataset} | {case.scale:g}× | {grids} | {label} | {_cell(summary)} | {gain} |"
            lines.append(row)
        for label, why in case.skipped.items():
            lines.append(f"| {case.dataset} | {case.scale:g}× | {grids} | {label} | not run: {why} | – |")
    return "\n".join(lines)


def dti_table(cases: list[VolumeCase]) -> str:
    """FA and MD mean absolute errors and principal-direction angles against the truth's fit."""
    lines = [
        "| data | scale | method | FA MAE brain | FA MAE WM | MD MAE brain (10⁻³ mm²/s) | "
        "MD MAE WM (10⁻³ mm²/s) | angle WM, median / mean (°) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        for label, scores in case.methods.items():
            d = scores.dti
            lines.append(
                f"| {case.dataset} | {case.scale:g}× | {label} | {d['fa_mae_brain']:.4f} | "
                f"{d['fa_mae_wm']:.4f} | {1e3 * d['md_mae_brain']:.4f} | {1e3 * d['md_mae_wm']:.4f} | "
                f"{d['angle_median_wm']:.2f} / {d['angle_mean_wm']:.2f} |"
            )
    return "\n".join(lines)


def _middle(volume: np.ndarray, mask: np.ndarray | None = None) -> int:
    """Axial index at the middle of the brain (of the array when no mask)."""
    if mask is None:
        return volume.shape[2] // 2
    zs = np.flatnonzero(mask.any(axis=(0, 1)))
    return int((zs.min() + zs.max()) // 2)


def patch_figure(example: dict[str, np.ndarray], scale: float, out: Path) -> Path:
    """Fig. 2 style, one patch: HR crop, LR (its own voxels), each method, |error| maps."""
    hr = example["HR"]
    k = _middle(hr)
    images = {"LR (nearest)": resample(example["LR"], hr.shape, order=0)[:, :, k]}
    images.update({label: sr[:, :, k] for label, sr in example.items() if label not in ("HR", "LR")})
    images["HR"] = hr[:, :, k]
    title = f"{scale:g}×: middle axial slice of the first test patch (S/S0)"
    return panel_grid(images, out, "HR", vmax=float(np.percentile(hr, 99.5)), title=title)


def volume_figures(case: VolumeCase, folder: Path, stem: str) -> tuple[Path, Path]:
    """Fig. 2 style on a whole volume (S/S0 of its first b ≈ 1000 volume) and the FA maps,
    each with |error| maps against the truth (mean errors over the brain); the same axial
    slice (the brain's middle)."""
    k = _middle(case.truth, case.mask)
    brain = case.mask[:, :, k]
    images = {"LR (nearest)": resample(case.lr, case.truth.shape, order=0)[:, :, k] * brain}
    images.update({label: s.example[:, :, k] * brain for label, s in case.methods.items()})
    images["truth"] = case.truth[:, :, k] * brain
    where = f"{case.dataset}, {case.scale:g}×, axial slice {k}"
    vmax = float(np.percentile(case.truth[case.mask], 99.5))
    sr = panel_grid(images, folder / f"{stem}.png", "truth", vmax=vmax, title=f"S/S0: {where}", region=brain)
    fa = {label: s.fa[:, :, k] for label, s in case.methods.items()}
    fa["truth"] = case.truth_fa[:, :, k]
    fa_path = panel_grid(fa, folder / f"{stem}-fa.png", "truth", 1.0, 0.25, f"DTI FA: {where}", brain)
    return sr, fa_path


def _case_json(case: VolumeCase) -> dict:
    return {
        "data": case.dataset,
        "scale": case.scale,
        "lr_shape": list(case.lr_shape),
        "hr_shape": list(case.hr_shape),
        "methods": {
            label: {**s.summary(), "psnr": s.psnr, "ssim": s.ssim} for label, s in case.methods.items()
        },
        "skipped": case.skipped,
    }


def write_report(
    out: Path,
    command: str,
    protocol: dict,
    methods: dict[str, Method],
    patch_results: dict[str, dict[float, Scores]],
    data_label: str,
    examples: dict[float, dict[str, np.ndarray]],
    volume_cases: list[VolumeCase],
    real_cases: list[VolumeCase],
) -> Path:
    """Write ``report.md``, ``results.json`` and ``figures/*.png`` into ``out``; returns the report."""
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    md = [
        "# csrdmri evaluation report",
        "",
        f"csrdmri {__version__}, {date.today().isoformat()}. Command: `{command}`",
        "",
        "Measured rows are labelled with their data; rows labelled *HCP (published)* are the "
        "paper's numbers, copied for comparison, never measured here. PSNR uses a data range of 1 "
        "on S/S0; SSIM a 7³ uniform window (scikit-image).",
        "",
        "## Methods",
        "",
        "| method | source | model | training |",
        "|---|---|---|---|",
    ]
    for label, method in methods.items():
        for up in method.upsamplers:
            model = up.meta.get("model", {"architecture": "tricubic"})
            training = up.meta.get("training")
            trained = (
                f"{training['model']}, {training['epochs']} epochs, scales {training['scale_range']}, "
                f"fft_weight {training['fft_weight']:g}"
                if training
                else "–"
            )
            arch = ", ".join(f"{k}={v}" for k, v in model.items())
            md.append(f"| {label} | {up.checkpoint or 'tricubic'} | {arch} | {trained} |")
    if patch_results:
        md += [
            "",
            "## Table 1: paper protocol",
            "",
            f"{data_label}; 40³ patches inside the brain, HR crop (10·s)³, LR 10³ by tricubic "
            "downsampling; mean ± sd over patches.",
            "",
            table1(patch_results, methods, data_label),
            "",
            ranking(patch_results, methods),
            "",
        ]
        second = table2(patch_results, methods, data_label)
        if second:
            md += ["## Table 2: ablations", "", second, ""]
        md += ["## Figures (paper protocol)", ""]
        for s in ordered_scales(list(examples)):
            path = patch_figure(examples[s], s, figures / f"patch-{s:g}x.png")
            md.append(f"![{s:g}× patch]({path.relative_to(out)})")
    for kind, title, cases, note in (
        (
            "volume",
            "Whole volumes",
            volume_cases,
            "Held-out phantom subjects degraded whole and super-resolved back.",
        ),
        (
            "real",
            "Real scans (degradation-based)",
            real_cases,
            "**Degradation-based evaluation**: each real scan, as acquired, plays the truth; it is "
            "downsampled by the scale and super-resolved back. This measures how well a method "
            "undoes that synthetic downsampling on real anatomy and noise, not how it performs on "
            "a scan acquired at the lower resolution.",
        ),
    ):
        if not cases:
            continue
        md += [
            "",
            f"## {title}",
            "",
            note + " S/S0 of each output divided by its own mean b0, scored inside the truth's "
            "brain mask over every evaluated b ≈ 1000 volume.",
            "",
            volume_table(cases),
            "",
            f"DTI: DIPY tensor fits (WLS) of the truth and of each output over the same volumes; "
            f"WM = truth FA > {WM_FA}.",
            "",
            dti_table(cases),
            "",
        ]
        for case in cases:
            stem = f"{kind}-{case.dataset}-{case.scale:g}x".replace("/", "_")
            sr, fa = volume_figures(case, figures, stem)
            md += [f"![{stem}]({sr.relative_to(out)})", f"![{stem} FA]({fa.relative_to(out)})", ""]
    results = {
        "command": command,
        "csrdmri_version": __version__,
        "protocol": protocol,
        "methods": {
            label: {
                "sources": [str(up.checkpoint or "tricubic") for up in m.upsamplers],
                "models": [up.meta.get("model") for up in m.upsamplers],
                "trainings": [up.meta.get("training") for up in m.upsamplers],
            }
            for label, m in methods.items()
        },
        "paper_protocol": {
            label: {
                f"{s:g}": {**scores.summary(), "psnr": scores.psnr, "ssim": scores.ssim}
                for s, scores in per_scale.items()
            }
            for label, per_scale in patch_results.items()
        },
        "whole_volume": [_case_json(c) for c in volume_cases],
        "real_scans": [_case_json(c) for c in real_cases],
    }
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")
    report = out / "report.md"
    with atomic_path(report) as tmp:
        tmp.write_text("\n".join(md) + "\n")
    return report


def real_datasets(paths: Sequence[Path]) -> dict[str, DatasetPaths]:
    """Scan name -> files, for each path that is a dataset, or each dataset folder inside one."""
    found: dict[str, DatasetPaths] = {}
    for path in map(Path, paths):
        if not path.exists():
            raise InputError(f"real scan folder not found: {path}")
        try:
            found[path.name.split(".nii")[0]] = find_dataset(path)
            continue
        except InputError:
            if not path.is_dir():
                raise
        inside = {}
        for sub in sorted(p for p in path.iterdir() if p.is_dir()):
            try:
                inside[sub.name] = find_dataset(sub)
            except InputError:
                continue
        if not inside:
            raise InputError(f"{path} is neither a dMRI dataset nor a folder of dMRI datasets")
        found.update(inside)
    return found


def run_report(
    out: Path | None,
    command: str,
    methods: dict[str, Method],
    cohort: Path | None,
    scales: Sequence[float],
    patches: int = 9,
    seed: int = 0,
    split: str = "test",
    volume_subjects: int = 1,
    volume_scales: Sequence[float] = (2.0,),
    directions: int | None = 30,
    real: Sequence[Path] = (),
    real_scales: Sequence[float] = (2.0, 2.4),
    options: Options | None = None,
) -> str:
    """Run the paper protocol and the first ``volume_subjects`` subjects' whole-volume protocol
    on the ``split`` of ``cohort`` (if given), the degradation-based protocol on the ``real``
    scans, and write the report into ``out`` (if given). Returns the tables (markdown)."""
    subjects = cohort_split(cohort, split) if cohort is not None else []
    scans = real_datasets(real)
    volume_names = subjects[:volume_subjects]
    units = len(subjects) + len(methods) * (
        len(volume_names) * len(volume_scales) + len(scans) * len(real_scales)
    )
    results: dict[str, dict[float, Scores]] = {}
    examples: dict[float, dict[str, np.ndarray]] = {}
    volume_cases: list[VolumeCase] = []
    real_cases: list[VolumeCase] = []
    with tqdm(total=units, desc="evaluating", unit="step", disable=None) as bar:

        def progress(what: str) -> None:
            bar.set_postfix_str(what)
            bar.update()

        if cohort is not None:
            results = paper_protocol(cohort, methods, scales, patches, seed, split, progress, examples)
        for name in volume_names:
            series = subset_series(load_dwi(find_dataset(Path(cohort) / name)), directions)
            volume_cases += volume_protocol(name, series, methods, volume_scales, options, progress)
        for name, paths in scans.items():
            series = subset_series(load_dwi(paths), directions)
            real_cases += volume_protocol(name, series, methods, real_scales, options, progress)
    plural = "s" if len(subjects) != 1 else ""
    data_label = f"phantom ({split}, {len(subjects)} subject{plural} × {patches} patches)"
    tables = [table1(results, methods, data_label)] if results else []
    tables += [f(cases) for cases in (volume_cases, real_cases) if cases for f in (volume_table, dti_table)]
    if out is not None:
        protocol = {
            "data": str(cohort) if cohort is not None else None,
            "split": split,
            "scales": list(scales),
            "patches_per_subject": patches,
            "seed": seed,
            "volume_subjects": volume_names,
            "volume_scales": list(volume_scales),
            "directions": directions,
            "real": {name: str(paths.dwi) for name, paths in scans.items()},
            "real_scales": list(real_scales),
        }
        write_report(out, command, protocol, methods, results, data_label, examples, volume_cases, real_cases)
    return "\n\n".join(tables)
