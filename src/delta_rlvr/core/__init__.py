"""Pure-PyTorch core: gradient proxies, DelTA coefficients, advantages, losses, token selection.

Imports only torch and the standard library, so adapters for other frameworks can use it
without pulling in the rest of the project.
"""

from delta_rlvr.core.advantages import AdvantageEstimator, group_advantages
from delta_rlvr.core.coefficients import (
    DeltaCoefficients,
    DeltaConfig,
    DeltaStats,
    DenseVectors,
    TokenVectors,
    delta_coefficients,
    grad_proxy,
)
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
    "grad_proxy",
    "group_advantages",
    "masked_mean",
    "masked_sum",
    "per_token_policy_loss",
    "policy_loss",
    "row_proxy",
    "select_tokens",
    "topk_hidden_proxy",
]
