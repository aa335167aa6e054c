"""Adapters that run DelTA inside other RL frameworks without forking them.

- ``delta_rlvr.adapters.trl``: a ``trl.GRPOTrainer`` subclass (extra ``delta-rlvr[trl]``).
- ``delta_rlvr.adapters.verl``: a verl worker and trainer pair (extra ``delta-rlvr[verl]``).

Both rest on one fact (docs/adapters.md): the coefficients are positive,
detached and fixed for a rollout batch, and the frameworks' clipped surrogates are positively
homogeneous in the advantage, so DelTA is a per-token advantage A x coef handed to the
framework's own, unchanged loss. Each adapter module imports its framework at import time;
importing this package imports neither. See docs/adapters.md.
"""

from delta_rlvr.adapters.common import DELTA_FIELDS, delta_config_from_prefixed

__all__ = ["DELTA_FIELDS", "delta_config_from_prefixed"]
