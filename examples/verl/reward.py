"""verl custom reward: 1/0 by the project's math verifier (math-verify in worker processes with
hard deadlines; a timeout scores 0). Passed to verl as
reward.custom_reward_function.path=examples/verl/reward.py reward.custom_reward_function.name=compute_score
"""

from delta_rlvr.verifiers import score_math


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **_):
    return score_math([solution_str], [str(ground_truth)])[0].score
