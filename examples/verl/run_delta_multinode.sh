#!/usr/bin/env bash
# DelTA on verl across several nodes of 8 GPUs (Ray cluster), same settings as run_delta_8gpu.sh.
#
# On the head node:    ray start --head --port=6379
# On every other node: ray start --address=<head-ip>:6379
# Then, on the head:   NNODES=2 MODEL=... TRAIN=... VAL=... bash examples/verl/run_delta_multinode.sh
#
# Every node needs delta-rlvr[verl] installed in the same environment (the Ray workers import
# delta_rlvr.adapters.verl.worker; the entry point also lists it in VERL_USE_EXTERNAL_MODULES).
# With global pooling the statistics are all-reduced over every data-parallel rank of the job:
#   POOLING=global NNODES=2 ... bash examples/verl/run_delta_multinode.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export NNODES=${NNODES:?set NNODES (number of nodes in the Ray cluster)}
export GPUS_PER_NODE=${GPUS_PER_NODE:-8}
export RAY_ADDRESS=${RAY_ADDRESS:-auto}
exec bash "$HERE/run_delta_8gpu.sh" "$@"
