#!/usr/bin/env bash
# Two csr-qspace trainings side by side on a lent GPU machine (16 cores, one GPU), each within
# the CPU budget when run on 2 cores (same steps and batches as there): the shipped
# architecture for 12 000 steps, and the narrow n16 network for 16 000 (the time target).
# Usage (device tool, run in the repository root with the wheels of .whl carried):
#   scripts/device_train.sh OUTDIR [A_STEPS B_STEPS WORKERS LIMIT_S]
set -uo pipefail
out=${1:?output folder}; a_steps=${2:-12000}; b_steps=${3:-16000}; workers=${4:-6}; limit=${5:-540}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader 2>/dev/null
mkdir -p "$out/A" "$out/B"
echo '{"fa_weight": 0.1, "checkpoint_every": 500}' > "$out/A.json"
echo '{"fa_weight": 0.1, "checkpoint_every": 500, "model": {"architecture": "qspace", "g0": 16, "growth": 16, "width": 128}}' > "$out/B.json"
train() {  # name steps
  timeout "$limit" python3 -m csrdmri train --model csr-qspace --out "$out/$1" --steps "$2" \
    --config "$out/$1.json" --workers "$workers" > "$out/$1.out" 2>&1
  echo "$1 exit $?"
}
train A "$a_steps" & train B "$b_steps" & wait
rm -f "$out/A.json" "$out/B.json"
for r in A B; do tail -c 300 "$out/$r.out" | tr '\r' '\n' | tail -2; tail -3 "$out/$r/log.csv"; done
