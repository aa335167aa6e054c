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
trap 'kill $SERVER 2>/dev/null || true' EXIT
# wait for the server's health endpoint; give up if the server dies or takes too long
WAIT=${VLLM_WAIT_S:-1800}
start=$(date +%s)
until curl -sf "http://127.0.0.1:$PORT/health/" >/dev/null; do
    if ! kill -0 "$SERVER" 2>/dev/null; then
        echo "error: the vLLM server (trl vllm-serve) exited before it was ready; see its log above" >&2
        exit 1
    fi
    if [ $(( $(date +%s) - start )) -gt "$WAIT" ]; then
        echo "error: the vLLM server was not ready after ${WAIT}s (set VLLM_WAIT_S to wait longer)" >&2
        exit 1
    fi
    sleep 5
done

CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6 accelerate launch \
    --config_file "$HERE/accelerate_multi_gpu.yaml" --num_processes 7 \
    "$HERE/train_delta_grpo.py" --model "$MODEL" --train-file "$TRAIN" \
    --vllm-host 127.0.0.1 --vllm-port "$PORT" "$@"
