#!/usr/bin/env bash
# The studies of docs/results.md, on the embedded default task (arithmetic, arith-tiny).
#
#   scripts/studies.sh STUDY [STUDY...]
#   STUDY: dapo_vs_delta | proxies | token_selection | verbose | ablations | wide_coefficients | all (in that order)
#
# Every default-task study is a `delta-rlvr compare` into one shared folder ($STUDY_DIR, default
# runs/studies), so the DAPO and DelTA runs of seeds 0-2 are trained once and reused as the
# baselines of the token-selection and ablation studies; the verbose-task study has its own
# subfolder. Everything is resumable: run the same command again and finished runs are skipped,
# interrupted ones continue. Several processes may run the same studies at once: each run is
# locked while it trains, and a process skips runs another one holds (coming back to them at
# the end). Each run uses one CPU thread, so on a 2-core machine start the command twice:
#
#   scripts/studies.sh all > w1.log 2>&1 &  scripts/studies.sh all > w2.log 2>&1 &
#
# PARTIAL=1 scripts/studies.sh all   summarises the runs finished so far (trains nothing) into
# <name>.partial.md next to each study's runs.
#
# Shared settings: the default recipe (250 steps, 16 prompts x 8 samples), 500 held-out problems
# kept out of training, each final checkpoint evaluated with k = 8 samples per problem at
# temperature 1.0, top-p 1.0 (the rollout distribution), in-training evaluations with 1 sample.
set -euo pipefail

STUDY_DIR=${STUDY_DIR:-runs/studies}
CLI=${CLI:-delta-rlvr}
PARTIAL_ARGS=()
[ "${PARTIAL:-0}" = 1 ] && PARTIAL_ARGS=(--partial)
COMMON=(--eval-problems 500 --k 8 --top-p 1.0 --output-dir "$STUDY_DIR"
        --set run.eval_samples=1 --set run.progress=false --set run.threads=1 "${PARTIAL_ARGS[@]}")

name() {  # the summary's file stem: NAME, or NAME.partial for a progress summary
    if [ "${PARTIAL:-0}" = 1 ]; then echo "$1.partial"; else echo "$1"; fi
}

dapo_vs_delta() {
    "$CLI" compare --name "$(name dapo_vs_delta)" --method dapo --method delta --seeds 0 1 2 3 4 5 6 7 "${COMMON[@]}"
}

token_selection() {
    # The variants first: when run beside dapo_vs_delta, the shared baselines are done by then.
    "$CLI" compare --name "$(name token_selection)" --baseline dapo --seeds 0 1 2 "${COMMON[@]}" \
        --method top50:algorithm.method=token_select,algorithm.select_mode=top \
        --method bottom50:algorithm.method=token_select,algorithm.select_mode=bottom \
        --method random50:algorithm.method=token_select,algorithm.select_mode=random \
        --method dapo --method delta
}

proxies() {
    # DelTA with each cheap token-gradient proxy (issue 7); full_sketch needs a backward pass per
    # token (~50 s per step here), too slow for 250-step runs on a CPU.
    "$CLI" compare --name "$(name proxies)" --baseline dapo --seeds 0 1 2 "${COMMON[@]}" \
        --method delta_topk_hidden:algorithm.proxy.name=topk_hidden \
        --method delta_lm_head:algorithm.proxy.name=lm_head \
        --method dapo --method delta
}

verbose() {
    # The second built-in task (configs/verbose_arith.yaml): ~90-token responses in a fixed
    # template, ~3x the default's compute per step, so 150 steps (evaluations at 0, 75, 150).
    # Seed by seed (dapo 0, delta 0, dapo 1, ...), so a study stopped half-way has matched pairs.
    "$CLI" compare --name "$(name verbose_dapo_vs_delta)" --config configs/verbose_arith.yaml --method dapo --method delta --order seed \
        --seeds 0 1 2 3 4 --eval-problems 500 --k 8 --top-p 1.0 --output-dir "$STUDY_DIR/verbose" \
        --set run.max_steps=150 --set run.eval_every=75 \
        --set run.eval_samples=1 --set run.progress=false --set run.threads=1 "${PARTIAL_ARGS[@]}"
}

C=algorithm.coefficients
# The widest-coefficient variants, shared by ablations and wide_coefficients (the same label must
# always mean the same settings: compare refuses a run folder trained with others).
NO_RANGE_MAP=(--method no_range_map:$C.range_map=false)
RANGES_TO_1_5=(--method range_0.8_1.5:$C.coef_max=1.5 --method range_0.5_1.5:$C.coef_min=0.5,$C.coef_max=1.5)

ablations() {
    local c=$C
    "$CLI" compare --name "$(name ablations)" --baseline dapo --seeds 0 1 2 "${COMMON[@]}" \
        --method K0:$c.refine_steps=0 \
        --method K2:$c.refine_steps=2 \
        --method K3:$c.refine_steps=3 \
        --method hard:$c.assignment=hard \
        --method within_side:$c.contrast=within_side \
        "${NO_RANGE_MAP[@]}" \
        --method no_self_norm:$c.self_normalise=false \
        --method random_coef:$c.random_coefficients=true \
        --method frozen_gamma:$c.freeze_temperature=true \
        --method range_0.5_1.2:$c.coef_min=0.5 \
        "${RANGES_TO_1_5[@]}" \
        --method dapo --method delta
}

wide_coefficients() {
    # Follow-up of the ablations: the three variants with the lowest scores at 3 seeds (the widest
    # coefficients) taken to the 8 seeds of DAPO and DelTA, seed by seed. Seeds 0-2 are the
    # ablation runs and seeds 0-7 of dapo/delta those of dapo_vs_delta, so only seeds 3-7 of the
    # three variants train here.
    "$CLI" compare --name "$(name wide_coefficients)" --baseline dapo --seeds 0 1 2 3 4 5 6 7 --order seed "${COMMON[@]}" \
        "${NO_RANGE_MAP[@]}" "${RANGES_TO_1_5[@]}" --method dapo --method delta
}

[ $# -gt 0 ] || { echo "usage: $0 dapo_vs_delta|token_selection|proxies|verbose|ablations|wide_coefficients|all ..." >&2; exit 2; }
for study in "$@"; do
    case "$study" in
        dapo_vs_delta|token_selection|proxies|verbose|ablations|wide_coefficients) "$study" ;;
        all) dapo_vs_delta; proxies; token_selection; verbose; ablations; wide_coefficients ;;
        *) echo "$0: unknown study '$study' (dapo_vs_delta, token_selection, proxies, verbose, ablations, wide_coefficients, all)" >&2; exit 2 ;;
    esac
done
