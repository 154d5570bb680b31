"""Rule 28: k05 (runs/held28) beside csr-qspace-cpu (docs/results/w128-held)."""
import json
from pathlib import Path

NEW, OLD = "k05", "csr-qspace-cpu"


def rows(path):
    d = json.loads(Path(path).read_text())
    for section in ("whole_volume", "real_scans", "angular"):
        for r in d.get(section) or []:
            yield section, f"{r['data']} {r['scale']:g}x", r["methods"]


def fmt(m, cu):
    out = f"raw {m['raw_psnr_mean'] - cu['raw_psnr_mean']:+.2f}"
    if "clean_psnr_mean" in m:
        out += f" nf {m['clean_psnr_mean'] - cu['clean_psnr_mean']:+.2f}"
    out += f" S/S0 {m['psnr_mean'] - cu['psnr_mean']:+.2f} FA {m['fa_mae_brain']:.4f}/{cu['fa_mae_brain']:.4f}"
    out += f" ({m['fa_mae_brain'] / cu['fa_mae_brain']:.3f})"
    if "clean_fa_mae_brain" in m:
        out += f" FAnf {m['clean_fa_mae_brain']:.4f}/{cu['clean_fa_mae_brain']:.4f} ({m['clean_fa_mae_brain'] / cu['clean_fa_mae_brain']:.3f})"
        out += f" WMnf {m['clean_fa_mae_wm'] / cu['clean_fa_mae_wm']:.3f}"
    out += f" MD {1e3 * m['md_mae_brain']:.3f}/{1e3 * cu['md_mae_brain']:.3f}"
    if m.get("safeguard") is not None:
        out += f" w {m['safeguard']}"
    return out


for name in ["phantom", "b3000", "multishell", "real", "sg-tricubic", "sg-kspace", "kspace-off"]:
    new = Path("runs/held28") / name / "results.json"
    old = Path("docs/results/w128-held") / f"{name}.json"
    if not new.exists():
        continue
    print(f"== {name}")
    olds = {(s, k): m for s, k, m in rows(old)}
    for section, key, m in rows(new):
        cu = m["tricubic"]
        o = olds.get((section, key))
        if o is not None:
            assert abs(o["tricubic"]["raw_psnr_mean"] - cu["raw_psnr_mean"]) < 1e-6, key
        print(f"{section[:5]} {key:48s} K05   {fmt(m[NEW], cu)}")
        if o is not None:
            print(f"{'':55s} SHIP  {fmt(o[OLD], o['tricubic'])}")

# rule 28: (a) k-space-made inputs with the safeguard, raw gain >= shipped - 0.02 each and above in the mean;
# (b) brain FA error <= 1.01x shipped's each, with and without the safeguard
ok, diffs = [], []
for name in ("sg-kspace", "kspace-off"):
    new = Path("runs/held28") / name / "results.json"
    if not new.exists():
        continue
    olds = {(s, k): m for s, k, m in rows(Path("docs/results/w128-held") / f"{name}.json")}
    for section, key, m in rows(new):
        o = olds[(section, key)]
        gain = lambda mm, c: mm["raw_psnr_mean"] - c["raw_psnr_mean"]  # noqa: E731
        d = gain(m[NEW], m["tricubic"]) - gain(o[OLD], o["tricubic"])
        fa = m[NEW]["fa_mae_brain"] / o[OLD]["fa_mae_brain"]
        if name == "sg-kspace":
            diffs.append(d)
            ok.append(d >= -0.02)
        ok.append(fa <= 1.01)
        print(f"rule 28 {name:10s} {key:44s} raw diff {d:+.3f} FA ratio {fa:.3f}")
if diffs:
    print(f"rule 28: {sum(ok)}/{len(ok)} checks, mean raw diff {sum(diffs) / len(diffs):+.3f} (must be > 0)")
