"""Pure-PyTorch core: gradient proxies, DelTA coefficients, advantages, losses, token selection.

Imports only torch and the standard library, so adapters for other frameworks can use it
without pulling in the rest of the project.

DelTA's modules, in import order (each imports only those above it):

- ``config``: ``DeltaConfig`` (settings) and ``DeltaStats`` (diagnostics), shared by both forms.
- ``kernels``: the per-chunk tensor arithmetic (sides, side sums, centroids, margins, gamma,
  assignment, coefficient map, statistics, input checks).
- ``coefficients``: the one-shot estimator ``delta_coefficients`` and ``TokenVectors``.
- ``streaming``: the micro-batch form ``DeltaStream``.
- ``packed``: ``PackedProxyCache``, the streaming passes without re-forwards.
- ``proxies``: the token-gradient proxies (``row_proxy``, ``topk_hidden_proxy``,
  ``LMHeadGradients``) and ``ProxyConfig``.
- ``frozen``: ``FrozenGamma``, the frozen assignment temperature across batches.
"""

from delta_rlvr.core.advantages import AdvantageEstimator, group_advantages
from delta_rlvr.core.coefficients import (
    DeltaCoefficients,
    DenseVectors,
    TokenVectors,
    delta_coefficients,
)
from delta_rlvr.core.config import DeltaConfig, DeltaStats
from delta_rlvr.core.losses import (
    Aggregation,
    PolicyLoss,
    PolicyLossConfig,
    aggregate,
    per_token_policy_loss,
    policy_loss,
)
from delta_rlvr.core.masked import masked_mean, masked_sum
from delta_rlvr.core.proxies import (
    PROXIES,
    LMHeadGradients,
    ProxyConfig,
    row_proxy,
    topk_hidden_proxy,
)
from delta_rlvr.core.selection import forking_token_mask, select_tokens
from delta_rlvr.core.streaming import (
    DeltaStream,
    StreamedDeltaCoefficients,
    delta_coefficients_streamed,
)

__all__ = [
    "PROXIES",
    "AdvantageEstimator",
    "Aggregation",
    "DeltaCoefficients",
    "DeltaConfig",
    "DeltaStats",
    "DeltaStream",
    "DenseVectors",
    "LMHeadGradients",
    "PolicyLoss",
    "PolicyLossConfig",
    "ProxyConfig",
    "StreamedDeltaCoefficients",
    "TokenVectors",
    "aggregate",
    "delta_coefficients",
    "delta_coefficients_streamed",
    "forking_token_mask",
    "group_advantages",
    "masked_mean",
    "masked_sum",
    "per_token_policy_loss",
    "policy_loss",
    "row_proxy",
    "select_tokens",
    "topk_hidden_proxy",
]
