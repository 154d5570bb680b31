"""Print Markdown rows of raw ΔPSNR / FA-error ratio over cubic from `csrdmri evaluate` results.

Usage: python scripts/delta_table.py RESULTS.json [RESULTS.json ...] [--reference tricubic]

One row per case (data, scale; the slabs of `--slab` runs under their scan's name), one column
per file (named by its folder) and method: "+0.38 / 0.985" = raw-intensity PSNR gain (dB) over
the reference of the same file, and FA MAE (brain) relative to the reference's.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def cells(results: dict, reference: str) -> dict[tuple[str, float], dict[str, str]]:
    rows: dict[tuple[str, float], dict[str, str]] = {}
    for case in results["whole_volume"] + results["real_scans"]:
        methods = case["methods"]
        base = methods[reference]
        row = {"cubic": f"{base['raw_psnr_mean']:.2f} dB, FA {base['fa_mae_brain']:.4f}"}
        for label, scores in methods.items():
            if label != reference:
                gain = scores["raw_psnr_mean"] - base["raw_psnr_mean"]
                row[label] = f"{gain:+.2f} / {scores['fa_mae_brain'] / base['fa_mae_brain']:.3f}"
        rows[(re.sub(r" slab \d+$", "", case["data"]), case["scale"])] = row  # slabs of a scan: one row
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--reference", default="tricubic")
    args = parser.parse_args()
    tables = {path: cells(json.loads(path.read_text()), args.reference) for path in args.results}
    keys = list(dict.fromkeys(k for table in tables.values() for k in table))
    columns = [(path, label) for path, table in tables.items() for label in next(iter(table.values()))]
    print("| data | scale | " + " | ".join(f"{p.parent.name} {label}" for p, label in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for key in keys:
        values = [tables[p].get(key, {}).get(label, "–") for p, label in columns]
        print(f"| {key[0]} | {key[1]:g}× | " + " | ".join(values) + " |")


if __name__ == "__main__":
    main()
