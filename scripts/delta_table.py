"""Print Markdown rows of raw ΔPSNR / FA-error ratio over cubic from `csrdmri evaluate` results.

Usage: python scripts/delta_table.py RESULTS.json [RESULTS.json ...] [--reference tricubic]
       [--baseline RESULTS.json] [--s0] [--clean]

One row per case (data, scale; the slabs of `--slab` runs under their scan's name), one column
per file (named by its folder) and method: "+0.38 / 0.985" = raw-intensity PSNR gain (dB) over
the reference of the same file, and FA MAE (brain) relative to the reference's. With `--s0`
the cell also holds the S/S0 PSNR gain: "+0.38 / +0.21 / 0.985". With `--baseline` the
reference is taken from that file instead (e.g. plain cubic of a `--consistency off` run, so
that runs with a consistency are compared with the same plain cubic); the reference then also
appears as a column of each file. With `--clean`, phantom cells add the same two scores against
the noise-free signal in brackets: "+0.38 / 0.985 (+0.85 / 0.955)".
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def cases(results: dict) -> dict[tuple[str, float], dict[str, dict]]:
    """The methods' scores of each case, keyed by (data, scale); the slabs of a scan are one row."""
    return {
        (re.sub(r" slab \d+$", "", case["data"]), case["scale"]): case["methods"]
        for case in results["whole_volume"] + results["real_scans"]
    }


def clean_cell(scores: dict, base: dict) -> str:
    """Raw PSNR gain and FA-error ratio against the noise-free signal, or "" on a real scan."""
    if "clean_psnr_mean" not in scores or "clean_psnr_mean" not in base:
        return ""
    gain = scores["clean_psnr_mean"] - base["clean_psnr_mean"]
    return f" ({gain:+.2f} / {scores['clean_fa_mae_brain'] / base['clean_fa_mae_brain']:.3f})"


def cells(
    results: dict, reference: str, baseline: dict | None = None, s0: bool = False, clean: bool = False
) -> dict[tuple[str, float], dict[str, str]]:
    rows: dict[tuple[str, float], dict[str, str]] = {}
    references = cases(baseline) if baseline is not None else None
    for key, methods in cases(results).items():
        base = (references[key] if references is not None else methods)[reference]
        row = {"cubic": f"{base['raw_psnr_mean']:.2f} dB, FA {base['fa_mae_brain']:.4f}"}
        for label, scores in methods.items():
            if label != reference or baseline is not None:
                gain = f"{scores['raw_psnr_mean'] - base['raw_psnr_mean']:+.2f}"
                if s0:
                    gain += f" / {scores['psnr_mean'] - base['psnr_mean']:+.2f}"
                row[label] = f"{gain} / {scores['fa_mae_brain'] / base['fa_mae_brain']:.3f}"
                row[label] += clean_cell(scores, base) if clean else ""
        rows[key] = row
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--reference", default="tricubic")
    parser.add_argument("--baseline", type=Path, help="take the reference's scores from this file")
    parser.add_argument("--s0", action="store_true", help="add the S/S0 PSNR gain to each cell")
    parser.add_argument("--clean", action="store_true", help="add the scores against the noise-free signal")
    args = parser.parse_args()
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    tables = {
        path: cells(json.loads(path.read_text()), args.reference, baseline, args.s0, args.clean)
        for path in args.results
    }
    keys = list(dict.fromkeys(k for table in tables.values() for k in table))
    columns = [(path, label) for path, table in tables.items() for label in next(iter(table.values()))]
    print("| data | scale | " + " | ".join(f"{p.parent.name} {label}" for p, label in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for key in keys:
        values = [tables[p].get(key, {}).get(label, "–") for p, label in columns]
        print(f"| {key[0]} | {key[1]:g}× | " + " | ".join(values) + " |")


if __name__ == "__main__":
    main()
