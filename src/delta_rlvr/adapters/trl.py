"""DelTA inside TRL: a ``GRPOTrainer`` subclass that hands A x coef to TRL's own loss.

Install with ``pip install 'delta-rlvr[trl]'`` (TRL >=1.16,<1.17; the private names used here
were read from trl 1.16.0, see docs/adapters.md).

Shapes: B responses of this process's generation batch, T completion tokens, H hidden size.

Design choices (docs/adapters.md, "TRL"):
1. One hook: ``_generate_and_score_completions``. It calls TRL's, then replaces the (B,)
   ``advantages`` by the (B, T) tensor A x coef. TRL's ``_compute_loss`` accepts (B, T)
   advantages (it unsqueezes only 1-D ones), so no loss code is copied.
2. Coefficients are computed once per generation batch (the whole local batch that TRL then
   shuffles and splits into ``steps_per_generation`` optimiser steps), under no_grad, from the
   policy as it sampled (no optimiser step has happened yet: the old policy).
3. One extra no-grad forward per generation batch gives both inputs of the proxy: the
   backbone's last hidden state (captured with a forward hook on the backbone, the input of the
   LM head) and log p(y_t) from TRL's own fused LM head, i.e. at the trainer's temperature and
   with the model's logit scaling exactly as TRL's loss sees them. Nothing hooks the LM head, so
   TRL's chunked head (which reads ``lm_head.weight`` directly) is no obstacle.
4. The valid-token mask is TRL's loss mask (completion mask x tool mask).
5. Pooling: "local" (default, as the paper's released code: each process's batch alone) or
   "global" (centroids, temperatures and N/Z summed over processes with an all-reduce through
   ``DeltaStream``'s reduce hook).
6. The proxy (``delta_proxy``): row (the paper's, default), topk_hidden or lm_head, built by
   the same function as the trainer's from the captured hidden state, the sampled ids and the
   LM-head matrix (which must be whole on each process: not under DeepSpeed ZeRO-3). lm_head
   pools locally only. full_sketch (one backward pass per token) is refused.
7. Statistics go to TRL's ``_metrics["train"]`` as ``delta/*``, averaged over processes.
8. In evaluation (``model.training`` False) advantages are left as TRL computed them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from trl import GRPOConfig, GRPOTrainer

from delta_rlvr.adapters.common import (
    DELTA_FIELDS,
    POOLING_CHOICES,
    all_reduce_sum,
    batch_coefficients,
    check_pooling,
    delta_config_from_prefixed,
)
from delta_rlvr.core import DeltaConfig, DeltaStats
from delta_rlvr.core.proxies import ProxyConfig
from delta_rlvr.models.proxies import head_proxy_vectors

#: The proxies the adapter offers (full_sketch needs a backward pass per token).
ADAPTER_PROXIES: tuple[str, ...] = ("row", "topk_hidden", "lm_head")

#: TRL loss types whose per-token loss is positively homogeneous in the advantage (trl 1.16):
#: the clip branch, SAPO's gate temperature, VESPO's gamma shape and the off-policy mask depend
#: on the sign of A only, and A x coef keeps the sign. So loss(A x coef) = coef x loss(A).
LINEAR_LOSS_TYPES: tuple[str, ...] = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo")

#: generation-batch keys that mean the forward needs more than input ids (vision inputs).
MULTIMODAL_KEYS: tuple[str, ...] = ("pixel_values", "image_grid_thw", "token_type_ids", "mm_token_type_ids")

PREFIX = "delta_"


@dataclass
class DeltaGRPOConfig(GRPOConfig):
    """``GRPOConfig`` plus DelTA's settings, each a ``DeltaConfig`` field prefixed ``delta_``.

    TRL already has a field named ``delta`` (its two-sided clip bound); no field here is named
    that. Defaults reproduce the paper (K = 1, coefficients in [0.8, 1.2]).
    ``delta_coef_min = delta_coef_max = 1`` turns DelTA into a no-op (stock GRPO, exactly).
    """

    delta_refine_steps: int = field(default=1, metadata={"help": "DelTA K, centroid refinement iterations."})
    delta_coef_min: float = field(default=0.8, metadata={"help": "DelTA lambda_min."})
    delta_coef_max: float = field(default=1.2, metadata={"help": "DelTA lambda_max."})
    delta_assignment: str = field(default="soft", metadata={"help": "'soft' (sigmoid) or 'hard' (1[margin > 0])."})
    delta_contrast: str = field(default="two_sided", metadata={"help": "'two_sided' or 'within_side'."})
    delta_range_map: bool = field(default=True, metadata={"help": "False: coefficient = alpha* itself."})
    delta_self_normalise: bool = field(default=True, metadata={"help": "Rescale coefficients to mean 1."})
    delta_random_coefficients: bool = field(default=False, metadata={"help": "Random-lambda ablation."})
    delta_freeze_temperature: bool = field(
        default=False, metadata={"help": "Freeze gamma at the first batch's gamma^(0)."}
    )
    delta_pooling: str = field(
        default="local",
        metadata={"help": "'local': each process's batch (paper); 'global': all-reduced.", "choices": POOLING_CHOICES},
    )
    delta_proxy: str = field(
        default="row",
        metadata={"help": "token-gradient proxy: 'row' (the paper's), 'topk_hidden' or 'lm_head'.", "choices": ADAPTER_PROXIES},
    )
    delta_proxy_topk: int = field(default=64, metadata={"help": "K of the topk_hidden proxy."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.delta_config()  # validate now, with errors naming the delta_* setting
        check_pooling(self.delta_pooling, "DeltaGRPOConfig.delta_pooling")
        self.delta_proxy_config()

    def delta_proxy_config(self) -> ProxyConfig:
        """The core ``ProxyConfig`` of ``delta_proxy`` / ``delta_proxy_topk`` (validated)."""
        if self.delta_proxy not in ADAPTER_PROXIES:
            raise ValueError(
                f"DeltaGRPOConfig.delta_proxy={self.delta_proxy!r} is not available in TRL; use one of "
                f"{ADAPTER_PROXIES} (full_sketch needs a backward pass per token: use delta-rlvr audit-proxy)"
            )
        if self.delta_proxy == "lm_head" and self.delta_pooling == "global":
            raise ValueError(
                "DeltaGRPOConfig.delta_proxy='lm_head' pools each process's batch only; set delta_pooling='local' "
                "or use delta_proxy='row' / 'topk_hidden' with global pooling"
            )
        try:
            return ProxyConfig(name=self.delta_proxy, topk=self.delta_proxy_topk)
        except ValueError as err:
            raise ValueError(str(err).replace("ProxyConfig.topk", "DeltaGRPOConfig.delta_proxy_topk")) from None

    def delta_config(self) -> DeltaConfig:
        """The core ``DeltaConfig`` these ``delta_*`` fields describe."""
        values = {PREFIX + name: getattr(self, PREFIX + name) for name in DELTA_FIELDS}
        return delta_config_from_prefixed(values, PREFIX, "DeltaGRPOConfig.")


def check_supported(args: GRPOConfig) -> None:
    """Refuse configurations DelTA cannot be added to by rewriting advantages."""
    if args.use_liger_kernel:
        raise ValueError(
            "DeltaGRPOTrainer does not support use_liger_kernel=True: Liger patches the model's "
            "modules and forward, and DelTA needs the plain backbone hidden state and TRL's own "
            "log-probs. Set use_liger_kernel=False (Hub kernels through model_init_kwargs "
            "use_kernels=True are also untested with DelTA)."
        )
    if args.loss_type not in LINEAR_LOSS_TYPES:
        raise ValueError(
            f"DeltaGRPOTrainer does not support loss_type={args.loss_type!r}: DelTA is handed to TRL "
            "as per-token advantages A x coef, which equals weighting the per-token loss only for "
            f"losses positively homogeneous in the advantage. Set loss_type to one of {LINEAR_LOSS_TYPES} "
            "('dapo' is the paper's)."
        )


class DeltaGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose advantages are per token: A x coef (DelTA, spec section 3).

    Use exactly like ``GRPOTrainer``, with a ``DeltaGRPOConfig`` as ``args``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, DeltaGRPOConfig):
            raise TypeError(
                f"DeltaGRPOTrainer needs args=DeltaGRPOConfig(...), got {type(self.args).__name__}; "
                "DeltaGRPOConfig is GRPOConfig plus the delta_* fields"
            )
        check_supported(self.args)
        self.delta_config: DeltaConfig = self.args.delta_config()
        self.delta_proxy: ProxyConfig = self.args.delta_proxy_config()
        self._delta_temperature: Tensor | None = None  # frozen gamma, with delta_freeze_temperature
        self._delta_generator: torch.Generator | None = None
        if self.delta_config.random_coefficients:
            seed = self.args.seed + self.accelerator.process_index
            self._delta_generator = torch.Generator(device="cpu").manual_seed(seed)

    # ----------------------------------------------------------------------------------------
    # The one overridden hook.

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if not self.model.training:
            return output
        coef, stats = self._delta_coefficients(output)
        advantages = output["advantages"]  # (B,)
        output["advantages"] = advantages.unsqueeze(1) * coef  # (B, T): A x coef, 0 at invalid tokens
        self._log_delta_stats(stats)
        return output

    # ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def _delta_coefficients(self, batch: dict[str, Any]) -> tuple[Tensor, DeltaStats]:
        """coef (B, T) float32 for this process's generation batch, and its statistics."""
        present = [key for key in MULTIMODAL_KEYS if key in batch]
        if present:
            raise NotImplementedError(
                f"DeltaGRPOTrainer: the generation batch carries {present}: vision-language training "
                "is not supported by the DelTA adapter yet; train a text-only model"
            )
        completion_mask = batch["completion_mask"]
        mask = completion_mask if "tool_mask" not in batch else completion_mask * batch["tool_mask"]
        mask = mask.bool()  # (B, T), True = token in TRL's loss
        hidden, logp = self._old_policy_hidden_and_logp(batch)
        v = head_proxy_vectors(self.delta_proxy, hidden, logp, batch["completion_ids"], mask, self._delta_head(),
                               temperature=self.temperature)  # (B, T, H) float32, or the implicit lm_head vectors
        reduce = None
        if self.args.delta_pooling == "global" and self.accelerator.num_processes > 1:
            reduce = all_reduce_sum
        temperature = self._delta_temperature
        coef, stats = batch_coefficients(
            v,
            batch["advantages"].float(),
            mask,
            self.delta_config,
            reduce=reduce,
            temperature=temperature,
            generator=self._delta_generator,
        )
        if self.delta_config.freeze_temperature and temperature is None:
            self._delta_temperature = stats.temperature[0].double()  # gamma^(0) of the first batch
        return coef, stats

    def _old_policy_hidden_and_logp(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """(hidden (B, T, H), logp (B, T) float32) of the completion tokens under the current
        (= sampling) policy, micro-batch by micro-batch as TRL's own old-log-prob pass."""
        prompt_ids, completion_ids = batch["prompt_ids"], batch["completion_ids"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # (B, P + T)
        attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        keep = completion_ids.size(1)
        backbone = self._delta_backbone()
        captured: list[Tensor] = []

        def grab(module: torch.nn.Module, args: Any, output: Any) -> None:
            # The backbone's final hidden state (after the final norm): the LM head's input.
            captured.append(output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0])

        step = self.args.per_device_train_batch_size
        hiddens, logps = [], []
        handle = backbone.register_forward_hook(grab)
        try:
            for start in range(0, input_ids.size(0), step):
                ids, att = input_ids[start : start + step], attention_mask[start : start + step]
                labels = ids.masked_fill(att == 0, -100)
                labels[:, :-keep] = -100
                captured.clear()
                with self.accelerator.autocast():
                    out = self.model(input_ids=ids, attention_mask=att, labels=labels, fused_lm_head=True)
                if len(captured) != 1:
                    raise RuntimeError(
                        f"DeltaGRPOTrainer: expected one backbone call per forward, saw {len(captured)}; "
                        "the model's forward is not TRL's fused-head forward (a Liger or custom "
                        "forward?). Use a plain transformers causal LM."
                    )
                # Hidden state at position j produces the distribution of token j + 1.
                hiddens.append(captured[0][:, -keep - 1 : -1])
                logps.append(out.log_probs[:, -keep:].float())
        finally:
            handle.remove()
        return torch.cat(hiddens), torch.cat(logps)

    def _delta_backbone(self) -> torch.nn.Module:
        """The decoder stack TRL's fused forward calls (``base_model`` of the causal LM)."""
        model = self.accelerator.unwrap_model(self.model)
        if hasattr(model, "get_base_model"):  # PEFT wrapper
            model = model.get_base_model()
        backbone = getattr(model, "base_model", None)
        if backbone is None or backbone is model:
            raise ValueError(
                f"DeltaGRPOTrainer: {type(model).__name__} exposes no backbone (base_model); pass a "
                "transformers *ForCausalLM model"
            )
        return backbone

    def _delta_head(self) -> torch.nn.Module:
        """The LM head (whole on this process), for the topk_hidden and lm_head proxies."""
        model = self.accelerator.unwrap_model(self.model)
        head = model.get_output_embeddings()
        if self.delta_proxy.name != "row" and (head is None or head.weight.numel() == 0):
            raise ValueError(
                f"DeltaGRPOTrainer: delta_proxy={self.delta_proxy.name!r} needs the whole LM-head matrix on each "
                "process, but it is sharded (DeepSpeed ZeRO-3?) or missing; use delta_proxy='row'"
            )
        return head

    def _log_delta_stats(self, stats: DeltaStats) -> None:
        """delta/* statistics into TRL's metrics, averaged over processes (NaN-aware)."""
        metrics = stats.as_metrics("delta/")
        names = sorted(metrics)
        values = torch.tensor([metrics[n] for n in names], dtype=torch.float64, device=self.accelerator.device)
        if self.accelerator.num_processes > 1:
            finite = torch.isfinite(values)
            summed = self.accelerator.reduce(torch.where(finite, values, torch.zeros_like(values)), "sum")
            counts = self.accelerator.reduce(finite.double(), "sum")
            values = summed / counts  # NaN where no process had a value
        for name, value in zip(names, values.tolist()):
            self._metrics["train"][name].append(value)
