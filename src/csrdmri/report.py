"""Tables of evaluation results beside the paper's published numbers (clearly labelled)."""

from __future__ import annotations

from csrdmri.evaluate import Scores
from csrdmri.paper import TABLE1

#: csrdmri method name -> row of the paper's Table 1.
PAPER_ROW = {
    "tricubic": "bicubic",
    "dcsrn": "dcsrn",
    "rescnn3d": "rescnn3d",
    "arssr": "arssr",
    "csr-dmri": "csr-dmri",
}


def markdown_table(results: dict[str, dict[float, Scores]], data_label: str) -> str:
    """One row per method (measured on ``data_label``) and, under it, the paper's HCP row.

    Cells are ``PSNR ± sd / SSIM ± sd`` (dB / unitless) for each scale.
    """
    scales = sorted({s for per_scale in results.values() for s in per_scale}, key=lambda s: (s != int(s), s))
    header = "| method | data | " + " | ".join(f"{s:g}× PSNR / SSIM" for s in scales) + " |"
    lines = [header, "|" + "---|" * (len(scales) + 2)]
    for method, per_scale in results.items():
        cells = []
        for s in scales:
            r = per_scale[s].summary()
            cells.append(
                f"{r['psnr_mean']:.2f} ± {r['psnr_std']:.2f} / {r['ssim_mean']:.4f} ± {r['ssim_std']:.4f}"
            )
        lines.append(f"| {method} | {data_label} | " + " | ".join(cells) + " |")
        paper = TABLE1.get(PAPER_ROW.get(method, ""))
        if paper:
            ref = [f"{paper[s][0]:.2f} / {paper[s][1]:.4f}" if s in paper else "–" for s in scales]
            lines.append(f"| {PAPER_ROW[method]} (paper) | HCP (published) | " + " | ".join(ref) + " |")
    return "\n".join(lines)
