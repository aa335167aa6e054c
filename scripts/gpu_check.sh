#!/usr/bin/env bash
# GPU check (one CUDA GPU, < 8 minutes): a short DelTA training run on the embedded default and
# the DelTA-vs-DAPO overhead benchmark, on the tiny model and on SmolLM2-135M-Instruct.
#   bash scripts/gpu_check.sh OUT_DIR
set -euo pipefail
out=${1:?usage: scripts/gpu_check.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || make install TORCH_SPEC=torch
py=.venv/bin/python
$py -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" | tee "$out/device.txt"
# 1. A short training run on the embedded default (device picked automatically, bf16 autocast).
timeout 180 .venv/bin/delta-rlvr train --output-dir "$out/train" --max-steps 30 --set run.progress=false 2>&1 | tail -5 | tee "$out/train.txt"
# 2. Overhead of DelTA against DAPO on the same rollouts (tiny model, then SmolLM2).
timeout 120 $py benchmarks/bench_overhead.py --rollouts 3 --repeats 6 --out "$out/overhead_tiny.json"
timeout 200 $py benchmarks/bench_overhead.py --config configs/smollm2_chain_sum.yaml \
  --set rollout.prompts_per_step=16 --set rollout.max_new_tokens=256 --set optim.micro_batch_size=64 \
  --rollouts 2 --repeats 5 --out "$out/overhead_smollm2.json"
echo "results in $out"
