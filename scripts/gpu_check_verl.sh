#!/usr/bin/env bash
# GPU check of the verl adapter (one CUDA GPU, about 5 minutes), the sibling of gpu_check.sh:
#   1. the packed cache's GPU tier against the in-memory cache and the float64 reference
#      (tests/core/test_packed.py, every_tier; its GPU cases are skipped without CUDA);
#   2. benchmarks/bench_verl_gpu_memory.py: a from-config Qwen3 (H = 1024, 8 layers, Qwen3's
#      151,936-token vocabulary, bf16) at T = 8192 response tokens (the paper's 20,480 scaled
#      down), 6 responses, through verl's own engine loop on the GPU: torch.cuda.max_memory_allocated
#      of the old-log-prob call for stock verl and for DelTA with each cache tier (GPU, pinned host,
#      disk spill, streamed), DelTA minus stock, model forwards and delta/forwards;
#   3. benchmarks/bench_spill_readback.py on this machine's local disk (SPILL_DIR, default /tmp).
#
#   bash scripts/gpu_check_verl.sh OUT_DIR
#
# Needs the project's verl extra where it runs (verl 0.9.1, ray, tensordict, hydra; `pip install
# -e '.[verl]'`): .venv/bin/python if there is one, else $PYTHON (default python3). Runs from the
# source tree (PYTHONPATH=src).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_check_verl.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
py=${PYTHON:-python3}
[ -x .venv/bin/python ] && py=.venv/bin/python
export PYTHONPATH="$PWD/src:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}"
$py -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())" \
  | tee "$out/device_verl.txt"
if ! $py -c "import verl, ray, tensordict, hydra" 2>/dev/null; then
  echo "verl 0.9.1 is not installed for $py: pip install -e '.[verl]' first (see docs/adapters.md)" | tee "$out/skipped_verl.txt"
  exit 1
fi
# 1. The GPU tier (the CPU, disk and mixed tiers run too).
timeout 120 $py -m pytest -q -p no:cacheprovider tests/core/test_packed.py -k every_tier -s 2>&1 | tail -20 \
  | tee "$out/gpu_tier.txt"
# 2. Old-log-prob GPU memory, DelTA minus stock, and forwards.
timeout 300 $py benchmarks/bench_verl_gpu_memory.py --device cuda --hidden 1024 --layers 8 --length 8192 --responses 6 \
  --out "$out/verl_gpu_memory.json" 2>&1 | grep -v -i warn | tee "$out/verl_gpu_memory.txt"
# 3. Read-back of the disk tier per GB, and the break-even against re-forwards.
timeout 150 $py benchmarks/bench_spill_readback.py --gib 8 --dir "${SPILL_DIR:-/tmp}" --out "$out/spill_readback.json" \
  | tee "$out/spill_readback.txt"
echo "results in $out"
