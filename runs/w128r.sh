#!/usr/bin/env bash
# Rule 35's run (docs/results.md): the shipped csr-qspace-cpu trained 800 steps more, half of its batches
# self-supervised patches of the development slab. Resumable.
set -euo pipefail
cd "$(dirname "$0")/.."
C=.venv/bin/csrdmri
echo '{"real": ["runs/data/realdev/philips-elition-2mm-slab"], "real_share": 0.5, "fa_weight": 0.1, "lr": 1e-4, "warmup": 50, "init": "csr-qspace-cpu", "model": {"architecture": "qspace", "width": 128}}' > runs/w128r.json
if [ -f runs/w128r/last.safetensors ]; then R=--resume; else R=; fi
$C train --model csr-qspace --out runs/w128r --steps 800 $R --config runs/w128r.json
