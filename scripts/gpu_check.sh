#!/usr/bin/env bash
# GPU check (one CUDA GPU, < 10 minutes):
#   1-2. a short DelTA training run on the embedded default and the DelTA-vs-DAPO overhead
#        benchmark (tiny model, SmolLM2-135M-Instruct) - needs the project's .venv;
#   3.   TRL: DeltaGRPOTrainer against stock GRPOTrainer, a few bf16 steps with a from-config
#        Qwen3 of H = 2048, T = 4096 completion tokens: step-time ratio and peak GPU memory.
#
# The verl adapter's GPU check (old-log-prob memory DelTA minus stock, delta/forwards, the cache's
# tiers) is its sibling, scripts/gpu_check_verl.sh.
#
#   bash scripts/gpu_check.sh OUT_DIR          # on the GPU machine
#   bash scripts/gpu_check.sh --fetch-wheels   # here, with PyPI access: the wheels step 3 needs
#
# Step 3 runs on a machine with torch and transformers but no TRL and no network (e.g. torch
# 2.11, transformers 5.17): it installs trl 1.16.0 and its small dependencies from ./wheels
# (git-ignored; carry it along) into ./.gpu_deps and runs from the source tree (PYTHONPATH=src),
# without installing the project. pandas and pyarrow (datasets' own dependencies) must already
# be installed there; the script says so if they are not.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--fetch-wheels" ]; then
  pip=${PIP:-.venv/bin/pip}
  mkdir -p wheels
  $pip download --no-deps -d wheels trl==1.16.0 accelerate==1.15.0 datasets==5.2.0 dill==0.4.1 fsspec
  for v in 3.10 3.11 3.12 3.13; do
    $pip download --no-deps --only-binary=:all: --python-version "$v" -d wheels multiprocess==0.70.19 xxhash==4.1.0 \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 || true
  done
  ls -la wheels
  exit 0
fi
out=${1:?usage: scripts/gpu_check.sh OUT_DIR | --fetch-wheels}
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ -x .venv/bin/python ]; then
  py=.venv/bin/python
  $py -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" | tee "$out/device.txt"
  # 1. A short training run on the embedded default (device picked automatically, bf16 autocast).
  timeout 180 .venv/bin/delta-rlvr train --output-dir "$out/train" --max-steps 30 --set run.progress=false 2>&1 | tail -5 | tee "$out/train.txt"
  # 2. Overhead of DelTA against DAPO on the same rollouts (tiny model, then SmolLM2).
  timeout 120 $py benchmarks/bench_overhead.py --rollouts 3 --repeats 6 --out "$out/overhead_tiny.json"
  timeout 200 $py benchmarks/bench_overhead.py --config configs/smollm2_chain_sum.yaml \
    --set rollout.prompts_per_step=16 --set rollout.max_new_tokens=256 --set optim.micro_batch_size=64 \
    --rollouts 2 --repeats 5 --out "$out/overhead_smollm2.json"
else
  echo "no .venv: skipping checks 1-2 (they need the project's environment)" | tee "$out/skipped.txt"
fi

# 3. TRL at realistic width, from the source tree.
py3=${PYTHON:-python3}
[ -x .venv/bin/python ] && py3=.venv/bin/python
$py3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())" | tee "$out/device_trl.txt"
export PYTHONPATH="$PWD/src:$PWD/.gpu_deps${PYTHONPATH:+:$PYTHONPATH}"
if ! $py3 -c "import trl" 2>/dev/null; then
  $py3 -c "import pandas, pyarrow" || { echo "pandas and pyarrow are needed by datasets and are not installed"; exit 1; }
  [ -d wheels ] || { echo "no trl and no ./wheels: run 'bash scripts/gpu_check.sh --fetch-wheels' where PyPI is reachable"; exit 1; }
  # --no-deps: torch, transformers, numpy, ... are the machine's own; only the fetched wheels are added
  $py3 -m pip install --quiet --no-index --no-deps --target .gpu_deps wheels/trl-*.whl wheels/accelerate-*.whl \
    wheels/datasets-*.whl wheels/dill-*.whl wheels/fsspec-*.whl \
    $(ls wheels/multiprocess-*-py$($py3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')-*.whl 2>/dev/null) \
    $(ls wheels/xxhash-*-cp$($py3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')-*.whl 2>/dev/null)
fi
$py3 -c "import trl, transformers, torch; print('trl', trl.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)" | tee "$out/versions_trl.txt"
# A from-config Qwen3, H = 2048, 4 layers, 8 responses of exactly 4096 completion tokens per
# generation batch (random tokens: --synthetic skips generation, so the steps are what is timed),
# micro-batches of 2, 4 optimiser steps per generation batch (aligned: DelTA adds one forward).
timeout 420 $py3 benchmarks/bench_trl_overhead.py --device cuda --bf16 --synthetic --hidden 2048 --layers 4 \
  --completion-length 4096 --micro-batch 2 --steps-per-generation 4 --batches 1 --repeats 3 --threads 4 \
  --out "$out/trl_overhead_h2048_t4096.json" | tee "$out/trl_overhead.txt"
echo "results in $out"
