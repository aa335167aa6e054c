#!/usr/bin/env bash
# DelTA + TRL on one 8-GPU node: vLLM server on GPU 7, training on GPUs 0-6.
# Usage: MODEL=Qwen/Qwen3-8B-Base TRAIN=deepmath.jsonl bash examples/trl/launch_8gpu.sh
set -euo pipefail
MODEL=${MODEL:?set MODEL}
TRAIN=${TRAIN:?set TRAIN (JSONL with prompt and gold)}
PORT=${PORT:-8000}
HERE=$(cd "$(dirname "$0")" && pwd)

CUDA_VISIBLE_DEVICES=7 trl vllm-serve --model "$MODEL" --port "$PORT" --max-model-len 22528 &
SERVER=$!
trap 'kill $SERVER' EXIT
# wait for the server's health endpoint
until curl -sf "http://127.0.0.1:$PORT/health/" >/dev/null; do sleep 5; done

CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6 accelerate launch \
    --config_file "$HERE/accelerate_multi_gpu.yaml" --num_processes 7 \
    "$HERE/train_delta_grpo.py" --model "$MODEL" --train-file "$TRAIN" \
    --vllm-host 127.0.0.1 --vllm-port "$PORT" "$@"
