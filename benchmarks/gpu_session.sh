#!/usr/bin/env bash
# The GPU checks of one lease, as one script: learner throughput and MFU in bf16, then a short CUDA
# training run end to end. Usage (device machine, repo root): bash benchmarks/gpu_session.sh OUT_DIR
set -uo pipefail
out=${1:?output folder}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-$PWD}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee -a "$out/gpu.txt"
timeout 130 python3 -m benchmarks.learner --device cuda --model small base large --num-envs 1024 4096 --updates 2 \
  --out "$out/learner_cuda.md" 2>&1 | tee "$out/learner.log"
timeout 200 python3 -m agents.cli train --task translation --model small --device cuda --total-tokens 400000 \
  --num-envs 512 --minibatches 2 --init mle --mle-steps 3000 --mle-batch-size 256 --mle-lr 1e-3 --lr 3e-5 --out "$out/run" \
  --eval-every 5 --eval-examples 512 --no-progress 2>&1 | tail -20 | tee "$out/train.log"
cp "$out/run/metrics.csv" "$out/train_metrics.csv" 2>/dev/null
cp "$out/run/summary.json" "$out/train_summary.json" 2>/dev/null
rm -rf "$out/run"
