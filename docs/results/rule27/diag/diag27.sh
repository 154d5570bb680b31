#!/usr/bin/env bash
# After rule 27 (not a rule input): g3r decomposed on the two development real scans, both operators, no
# safeguard: the whole model, without its gated path (gate rows zeroed), its order-0 correction only; beside
# k05 (rule 26) and k05o0 (g3fa's order-0 correction, rule 25).
set -euo pipefail
cd "$(dirname "$0")/.."
M=tricubic,csr-qspace-cpu,g3r=runs/g3r/last.safetensors,nopath=runs/diag/g3r-nopath.safetensors,order0=runs/diag/g3r-order0.safetensors,k05=runs/k05/last.safetensors,k05o0=runs/diag/k05o0.safetensors
C=".venv/bin/csrdmri evaluate --patches 0 --models $M --safeguard off"
run() { out=runs/diag27/$1; shift; [ -f $out/results.json ] || $C "$@" --out $out; }
for d in tricubic kspace; do
  run realdev-$d --real runs/data/realdev --real-scales 2 --directions 0 --degradation $d
done
