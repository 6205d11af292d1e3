#!/bin/sh
# bench/train_gpu.py on the device machine (one H200), as one prepared command: install the
# wheels its image lacks (bench/device/wheels.txt, carried as .whl/), then every run in one
# process tree with a budget that ends well inside one 10-minute call. Results land in $OUT
# (or ./bench-out): train_gpu_h200.{txt,json,profile.txt}, loss_memory_h200.{txt,json}, the log.
#
#   run(command="sh bench/device/train_gpu.sh", carry=[".whl"], timeout_s=600)
#   SMOKE=1 OUT=/tmp/dev sh bench/device/train_gpu.sh     # the same plumbing on CPU
set -eu
out=${OUT:-bench-out}
mkdir -p "$out"
if [ -z "${SMOKE:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 bench/train_gpu.py ${SMOKE:+--smoke} --out "$out/train_gpu_h200" --budget "${BUDGET:-480}" \
    --runs "${RUNS:-golora,golora-hf,seed,t4,golora-packed,golora-liger,golora-profile,golora-bf16}" 2>&1 | tee "$out/train_gpu_h200.log"
tokens=2048,8192
[ -z "${SMOKE:-}" ] || tokens=256
python3 bench/loss_memory.py --out "$out/loss_memory_h200" --tokens "$tokens" 2>&1 | tee -a "$out/train_gpu_h200.log"
