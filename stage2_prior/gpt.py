"""GPT prior: a transformers ``GPT2LMHeadModel`` built from a config (no pretrained weights) over code sequences.

A code grid ``[H, W, C]`` is read in raster order with its C channels interleaved, giving ``L = H*W*C`` tokens.
Channel c's codes use their own slice of one joint vocabulary (offset by the sizes of earlier channels), and at
each position the logits of the other channels' slices are masked out, so the model only ever predicts a valid
code. A condition token comes first: one per class, plus a null token that means "no class" (unconditional data,
and the label dropout that classifier-free guidance needs).

Conditioned on another code level (the bottom prior of VQ-VAE-2, ``context_level``): the context level's codes
follow the condition token as a prefix, in a vocabulary slice of their own after the class tokens; they are
given, never predicted, so the loss counts only the modelled level's tokens.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

from .config import PriorConfig, SampleControls
from .base import Prior
from .sampling import Guidance, draw, logits_warpers


class GPTPrior(Prior):
    saved_as = "gpt"

    def __init__(self, config: PriorConfig):
        super().__init__(config)
        self.null_token = self.code_vocab + self.null_class  # class c is token code_vocab + c
        context_sizes = config.context_codebook_sizes or []
        self.context_len = (math.prod(config.context_grid) * len(context_sizes)) if config.context_level else 0
        context_offsets = self.null_token + 1 + torch.tensor([0] + context_sizes[:-1]).cumsum(0)
        self.register_buffer("context_offsets", context_offsets[: len(context_sizes)], persistent=False)
        total_vocab = self.null_token + 1 + sum(context_sizes)
        # Code tokens may only be predicted inside their channel's slice (never a condition or context token).
        self.register_buffer("channel_bias", self.vocabulary_slices(total_vocab), persistent=False)
        self.register_buffer("position_bias", self.token_slices(total_vocab), persistent=False)  # [L, V]

        g = config.gpt
        gpt_config = GPT2Config(
            vocab_size=total_vocab,
            n_positions=self.context_len + self.seq_len + 1,
            n_embd=g.n_embd,
            n_layer=g.n_layer,
            n_head=g.n_head,
            resid_pdrop=g.dropout,
            embd_pdrop=g.dropout,
            # No dropout on the attention weights: on a CPU it forces SDPA's unfused path (1.4x the training
            # tokens/s with the exact GELU, gpt.activation, against the tanh form: vqgen bench section f).
            attn_pdrop=0.0,
            activation_function=g.activation,
            bos_token_id=None,
            eos_token_id=None,
        )
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        self.model = GPT2LMHeadModel(gpt_config)
        hf_logging.set_verbosity(verbosity)

    # --- shapes ------------------------------------------------------------------------------------------------
    def condition_tokens(self, labels: Optional[torch.Tensor], n: int, device, drop: bool = False) -> torch.Tensor:
        """``[n, 1]``: the class token of each item (the null token where it has no class)."""
        return (self.code_vocab + self.classes(labels, n, device, drop)).view(n, 1)

    def prefix(self, cond: torch.Tensor, context: Optional[torch.Tensor]) -> torch.Tensor:
        """Condition token, then the context level's tokens when the prior is conditioned on one."""
        if not self.context_len:
            return cond
        if context is None:
            raise ValueError(f"this prior models a level conditioned on {self.config.context_level!r}: pass context")
        return torch.cat([cond, (context + self.context_offsets).flatten(1)], dim=1)

    # --- the prior contract ------------------------------------------------------------------------------------
    def loss(self, codes: torch.Tensor, labels: Optional[torch.Tensor] = None,
             context: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Mean negative log-likelihood per code, in nats."""
        tokens = self.to_tokens(codes)
        cond = self.condition_tokens(labels, tokens.shape[0], tokens.device, drop=self.training)
        prefix = self.prefix(cond, context)
        inputs = torch.cat([prefix, tokens[:, :-1]], dim=1)
        logits = self.model(input_ids=inputs).logits[:, prefix.shape[1] - 1 :].float() + self.position_bias
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))

    @torch.no_grad()
    def sample(
        self,
        n: int,
        labels: Optional[torch.Tensor] = None,
        controls: Optional[SampleControls] = None,
        generator: Optional[torch.Generator] = None,
        use_cache: bool = True,
        context: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Draw ``n`` code grids ``[n, H, W, C]``, one token at a time with the KV cache (``use_cache=False``
        recomputes the whole prefix at every step; it exists to check the cache and to measure it)."""
        controls = controls or SampleControls()
        device = self.offsets.device
        warpers = logits_warpers(controls.temperature, controls.top_k, controls.top_p)
        cond = self.condition_tokens(labels, n, device)
        # Scale 0 runs the null token alone and 1 the labels alone; other scales run both in one batch of 2n.
        guidance = Guidance(cond, self.null_token, controls.cfg_scale if labels is not None else 1.0)
        cond = guidance.classes
        context = guidance.expand(context) if context is not None else None
        cond = self.prefix(cond, context)
        tokens = torch.empty(cond.shape[0], 0, dtype=torch.long, device=device)
        past = None
        step_input = cond
        for t in range(self.seq_len):
            if use_cache:
                out = self.model(input_ids=step_input, past_key_values=past, use_cache=True)
                past = out.past_key_values
            else:
                out = self.model(input_ids=torch.cat([cond, tokens], dim=1), use_cache=False)
            logits = guidance.combine(out.logits[:, -1].float()) + self.position_bias[t]
            chosen = draw(logits, warpers, generator)
            if guidance.doubled:
                chosen = chosen.repeat(2)
            tokens = torch.cat([tokens, chosen[:, None]], dim=1)
            step_input = chosen[:, None]
        return self.to_codes(tokens[:n])


def bits_per_code(nats: torch.Tensor | float) -> float:
    return float(nats) / math.log(2)
