"""verl custom reward for math and code: `delta_rlvr.rewards.compute_score`.

Math: 1/0 by the project's math verifier (math-verify in worker processes with hard
deadlines; a timeout scores 0). Code (the ground truth is a code spec, or data_source is
codecontests / apps / codeforces / taco or starts with "code"): the response's program run on
the tests in the bubblewrap sandbox, 1/0 (or the fraction passed with partial_credit).
Passed to verl as

    reward.custom_reward_function.path=examples/verl/reward.py reward.custom_reward_function.name=compute_score
    # optional settings, merged into every call by verl's get_custom_reward_fn:
    +reward.custom_reward_function.reward_kwargs.partial_credit=true
    +reward.custom_reward_function.reward_kwargs.timeout_s=10
"""

from delta_rlvr.rewards import compute_score

__all__ = ["compute_score"]
