#!/usr/bin/env bash
# DelTA on verl 0.9.1, one node of 8 GPUs, with the paper's settings (the paper's training settings):
# DAPO without dynamic sampling (clip 0.2 / 0.28, dual-clip 10, token-mean, soft overlong
# penalty buffer 4096 factor 1.0), 128 prompts x 16 samples, mini-batch 32 prompts, lr 1e-6
# constant, weight decay 0.1, grad clip 1.0, max prompt 2048 / response 20480, temperature 1.0,
# top-p 1.0, no KL, no entropy bonus, SGLang rollout, resume auto; DelTA K = 1, [0.8, 1.2].
#
# Usage: MODEL=Qwen/Qwen3-8B-Base TRAIN=train.parquet VAL=aime25.parquet bash examples/verl/run_delta_8gpu.sh [overrides]
# The parquet files are verl's RL format (prompt, reward_model.ground_truth, data_source).
set -euo pipefail
MODEL=${MODEL:?set MODEL}
TRAIN=${TRAIN:?set TRAIN}
VAL=${VAL:?set VAL}
NNODES=${NNODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
SP=${SP:-4}   # Ulysses sequence parallelism, as the authors ran it
# DelTA's packed cache of the signed tokens' hidden states (bf16: 2 H + 8 bytes per signed token),
# one per data-parallel rank (SP rank 0 of each SP group holds it): with it the coefficients need
# no extra forward. Tiers, filled in order: pinned CPU memory up to DELTA_CACHE_MIB per rank, then
# a memory-mapped file in DELTA_SPILL_DIR (local NVMe; created if missing, on every node) up to
# DELTA_SPILL_GIB per rank. Only a batch over both streams (same coefficients, K + 1 = 2
# re-forwards; delta/forwards says which happened). At these settings (1024 responses x 20480
# tokens per rank, Qwen3-8B's H = 4096) the worst case is 160 GiB per rank, 32 GiB in memory and
# 129 GiB on disk: a local disk with 260 GiB free per node (2 ranks per node). Spilling beats the
# 2 re-forwards only on a disk that writes and reads back fast enough (break-even about 1.2 GB/s
# per node at 40% MFU; docs/adapters.md); on a slower one set DELTA_SPILL_DIR= to stream. The plan line
# printed below says where this launch's cache lands (set HIDDEN=<H> if the model's config is
# not local). See docs/adapters.md ("verl: passes and memory").
DELTA_CACHE_MIB=${DELTA_CACHE_MIB:-32768}
DELTA_OFFLOAD=${DELTA_OFFLOAD:-true}
DELTA_SPILL_DIR=${DELTA_SPILL_DIR-${TMPDIR:-/tmp}/delta-spill}   # DELTA_SPILL_DIR= (empty): no disk tier
DELTA_SPILL_GIB=${DELTA_SPILL_GIB:-160}
HERE=$(cd "$(dirname "$0")" && pwd)
max_prompt=2048
max_response=20480
train_batch=128
samples=16
log_prob_tokens=$(( (max_prompt + max_response) * 2 ))

spill_plan=() spill_args=()
if [ -n "$DELTA_SPILL_DIR" ]; then
  mkdir -p "$DELTA_SPILL_DIR"
  spill_plan=(--spill-dir "$DELTA_SPILL_DIR" --spill-gib "$DELTA_SPILL_GIB")
  spill_args=(+delta.spill_dir="$DELTA_SPILL_DIR" +delta.spill_gib="$DELTA_SPILL_GIB")
fi
python -m delta_rlvr.adapters.verl.plan \
    --responses-per-rank $(( train_batch * samples * SP / (NNODES * GPUS_PER_NODE) )) \
    --max-response-length $max_response --model "$MODEL" ${HIDDEN:+--hidden "$HIDDEN"} \
    --cache-mib "$DELTA_CACHE_MIB" $([ "$DELTA_OFFLOAD" = true ] && echo --offload-cache) \
    ${spill_plan[@]+"${spill_plan[@]}"} --refine-steps 1 \
    --micro-batch-tokens $log_prob_tokens --ranks-per-node $(( GPUS_PER_NODE / SP )) || true

python -m delta_rlvr.adapters.verl.main \
    trainer.use_v1=false \
    +delta.enable=true +delta.pooling=${POOLING:-local} +delta.refine_steps=1 +delta.coef_min=0.8 +delta.coef_max=1.2 \
    +delta.cache_mib=$DELTA_CACHE_MIB +delta.offload_cache=$DELTA_OFFLOAD \
    ${spill_args[@]+"${spill_args[@]}"} \
    algorithm.adv_estimator=grpo algorithm.norm_adv_by_std_in_grpo=true \
    algorithm.use_kl_in_reward=false \
    data.train_files="$TRAIN" data.val_files="$VAL" \
    data.train_batch_size=$train_batch \
    data.max_prompt_length=$max_prompt data.max_response_length=$max_response \
    data.filter_overlong_prompts=true data.truncation=left \
    actor_rollout_ref.model.path="$MODEL" \
    actor_rollout_ref.model.use_remove_padding=true \
    actor_rollout_ref.model.use_fused_kernels=false \
    actor_rollout_ref.model.enable_gradient_checkpointing=true \
    actor_rollout_ref.model.external_lib=delta_rlvr.adapters.verl.worker \
    actor_rollout_ref.actor.strategy=fsdp2 \
    actor_rollout_ref.actor.ppo_mini_batch_size=32 \
    actor_rollout_ref.actor.ppo_epochs=1 \
    actor_rollout_ref.actor.use_dynamic_bsz=true \
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu=$(( (max_prompt + max_response) * 2 )) \
    actor_rollout_ref.actor.ulysses_sequence_parallel_size=$SP \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.optim.weight_decay=0.1 \
    actor_rollout_ref.actor.grad_clip=1.0 \
    actor_rollout_ref.actor.clip_ratio_low=0.2 actor_rollout_ref.actor.clip_ratio_high=0.28 \
    actor_rollout_ref.actor.clip_ratio_c=10.0 \
    actor_rollout_ref.actor.loss_agg_mode=token-mean \
    actor_rollout_ref.actor.use_kl_loss=false actor_rollout_ref.actor.entropy_coeff=0 \
    actor_rollout_ref.rollout.name=sglang \
    actor_rollout_ref.rollout.n=$samples \
    actor_rollout_ref.rollout.temperature=1.0 actor_rollout_ref.rollout.top_p=1.0 \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.7 \
    actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
    actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=true \
    actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=$log_prob_tokens \
    reward.reward_manager.name=dapo \
    +reward.reward_kwargs.overlong_buffer_cfg.enable=true \
    +reward.reward_kwargs.overlong_buffer_cfg.len=4096 \
    +reward.reward_kwargs.overlong_buffer_cfg.penalty_factor=1.0 \
    +reward.reward_kwargs.overlong_buffer_cfg.log=false \
    +reward.reward_kwargs.max_resp_len=$max_response \
    reward.custom_reward_function.path="$HERE/reward.py" \
    reward.custom_reward_function.name=compute_score \
    trainer.nnodes=$NNODES trainer.n_gpus_per_node=$GPUS_PER_NODE \
    trainer.logger='["console","tensorboard"]' \
    trainer.project_name=delta-rlvr trainer.experiment_name=delta-qwen3-8b \
    trainer.resume_mode=auto \
    trainer.total_training_steps=220 trainer.save_freq=10 trainer.test_freq=10 \
    "$@"
