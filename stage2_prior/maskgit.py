"""MaskGIT prior (Chang et al. 2022): a bidirectional transformer (``nn.TransformerEncoder``, pre-norm) that fills
in masked codes, decoded in a few parallel steps.

Tokens: a code grid ``[H, W, C]`` becomes ``L = H*W*C`` tokens, positions x channels in raster order with the
channels interleaved (as in the GPT prior), each channel in its own slice of one joint vocabulary, plus one [MASK]
token. A learned embedding per token index tells positions and channels apart. Masking works per token, so the
channels of one position (residual VQ depth, product VQ groups) can be revealed in different steps and each is
predicted given whatever is already known. A class token comes first: one per class, plus a null class that
stands for "no class" (unconditional data, label dropout, the unconditional half of classifier-free guidance).

Training: per item draw r ~ U(0, 1), mask ``ceil(schedule(r) * L)`` random tokens and take the cross-entropy on
the masked tokens only. ``loss`` in eval mode returns that masked-token loss averaged over the schedule, at the
midpoints of ``EVAL_RATIOS`` equal slices of r with a fixed mask seed, so it is deterministic. It is what the
pipeline reports as MaskGIT's "NLL" (bits per code), but it is NOT an exact likelihood of the codes: each term
predicts a masked token independently of the other masked tokens, so it is not comparable to the exact NLL of the
autoregressive priors (PixelCNN, GPT).

Sampling: start with every token masked; at each of ``steps`` steps, draw a code for every masked token
(temperature, top-k, top-p, guidance), score each draw by its log-probability plus Gumbel noise scaled by
``choice_temperature * (1 - t/steps)``, and re-mask the least confident draws; ``sampling.masked_counts`` (the
schedule) decides how many stay masked after each step, and none after the last.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .config import PriorConfig, SampleControls
from .base import Prior
from .sampling import (Guidance, draw, gumbel_noise, logits_warpers, mask_fraction,
                       masked_counts, uniform, warp)

EVAL_RATIOS = 8  # eval-mode loss: the mean over this many masking ratios spread over the schedule
EVAL_MASK_SEED = 0


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the masked tokens only: ``logits [B, L, V]``, ``targets``/``mask`` ``[B, L]``."""
    return F.cross_entropy(logits[mask], targets[mask])


def random_mask(ratios: torch.Tensor, length: int, schedule: str,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``[B, L]`` bool: ``ceil(schedule(r) * L)`` tokens masked per row (at least one), chosen at random."""
    counts = torch.ceil(mask_fraction(schedule, ratios) * length).long().clamp(1, length)
    scores = uniform((ratios.shape[0], length), generator, ratios.device)
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return ranks < counts[:, None]


class MaskGITPrior(Prior):
    saved_as = "maskgit"

    def __init__(self, config: PriorConfig):
        super().__init__(config)
        self.mask_token = self.code_vocab
        # position_bias[t] is 0 on the vocabulary slice of token t's channel and -inf elsewhere.
        self.register_buffer("position_bias", self.token_slices(self.code_vocab), persistent=False)

        m = config.maskgit
        self.token_embedding = nn.Embedding(self.code_vocab + 1, m.n_embd)  # + [MASK]
        self.class_embedding = nn.Embedding(config.num_classes + 1, m.n_embd)  # + null class
        self.position_embedding = nn.Parameter(torch.zeros(self.seq_len + 1, m.n_embd))  # class token first
        for weight in (self.token_embedding.weight, self.class_embedding.weight, self.position_embedding):
            nn.init.normal_(weight, std=0.02)
        self.dropout = nn.Dropout(m.dropout)
        layer = nn.TransformerEncoderLayer(m.n_embd, m.n_head, 4 * m.n_embd, m.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        # Dropout on the residual branches only, as GPT-2 places it: dropout on the attention weights sends CPU
        # attention to its unfused path, and on the 4x-wide FFN hidden it costs more random numbers than the rest.
        layer.self_attn.dropout = 0.0
        layer.dropout = nn.Identity()
        self.encoder = nn.TransformerEncoder(layer, m.n_layer, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(m.n_embd)
        self.head = nn.Linear(m.n_embd, self.code_vocab)

    # --- the network -------------------------------------------------------------------------------------------
    def raw_logits(self, tokens: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` tokens ([MASK] where unknown) and ``[B]`` classes -> ``[B, L, V]`` logits before the
        channel slices are applied (guidance mixes these; the -inf bias comes after)."""
        x = torch.cat([self.class_embedding(classes)[:, None], self.token_embedding(tokens)], dim=1)
        hidden = self.encoder(self.dropout(x + self.position_embedding))
        return self.head(self.norm(hidden[:, 1:])).float()

    def masked_loss(self, tokens: torch.Tensor, mask: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Hide the masked tokens behind [MASK] and score the model's guesses for them (and only them)."""
        logits = self.raw_logits(tokens.masked_fill(mask, self.mask_token), classes) + self.position_bias
        return masked_cross_entropy(logits, tokens, mask)

    # --- the prior contract ------------------------------------------------------------------------------------
    def loss(self, codes: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Masked-token cross-entropy in nats per code. Training: one random ratio per item. Eval: the average over
        the schedule with a fixed mask seed (deterministic; not an exact likelihood, see the module docstring)."""
        tokens = self.to_tokens(codes)
        batch, device = tokens.shape[0], tokens.device
        schedule = self.config.maskgit.train_schedule
        if self.training:
            classes = self.classes(labels, batch, device, drop=True)
            mask = random_mask(torch.rand(batch, device=device), self.seq_len, schedule)
            return self.masked_loss(tokens, mask, classes)
        classes = self.classes(labels, batch, device)
        generator = torch.Generator(device=device).manual_seed(EVAL_MASK_SEED)
        losses = []
        for k in range(EVAL_RATIOS):
            ratios = torch.full((batch,), (k + 0.5) / EVAL_RATIOS, device=device)
            losses.append(self.masked_loss(tokens, random_mask(ratios, self.seq_len, schedule, generator), classes))
        return torch.stack(losses).mean()

    @torch.no_grad()
    def sample(
        self,
        n: int,
        labels: Optional[torch.Tensor] = None,
        controls: Optional[SampleControls] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Draw ``n`` code grids ``[n, H, W, C]`` in ``controls.steps`` parallel decoding steps."""
        tokens, _ = self.decode(n, labels, controls, generator)
        return self.to_codes(tokens)

    @torch.no_grad()
    def decode(
        self,
        n: int,
        labels: Optional[torch.Tensor] = None,
        controls: Optional[SampleControls] = None,
        generator: Optional[torch.Generator] = None,
    ) -> tuple[torch.Tensor, list[int]]:
        """Iterative decoding. Returns the ``[n, L]`` tokens and how many stayed masked after each step."""
        controls = controls or SampleControls()
        device = self.offsets.device
        warpers = logits_warpers(controls.temperature, controls.top_k, controls.top_p)
        guidance = Guidance(self.classes(labels, n, device), self.null_class,
                            controls.cfg_scale)
        tokens = torch.full((n, self.seq_len), self.mask_token, dtype=torch.long, device=device)
        masked = torch.ones_like(tokens, dtype=torch.bool)
        history = []
        counts = masked_counts(self.seq_len, controls.steps, controls.schedule)
        for step, n_masked in enumerate(counts, start=1):
            logits = guidance.combine(self.raw_logits(guidance.expand(tokens), guidance.classes))
            logits = warp((logits + self.position_bias).flatten(0, 1), warpers)
            drawn = draw(logits, [], generator)  # already warped
            log_probs = torch.log_softmax(logits, dim=-1).gather(1, drawn[:, None]).view(n, self.seq_len)
            drawn = torch.where(masked, drawn.view(n, self.seq_len), tokens)
            # Known tokens get infinite confidence, so they are never masked again.
            confidence = torch.where(masked, log_probs, math.inf)
            if n_masked:
                noise_scale = controls.choice_temperature * (1 - step / controls.steps)
                confidence = confidence + noise_scale * gumbel_noise(confidence.shape, generator, device)
            ranks = confidence.argsort(dim=1).argsort(dim=1)
            masked = ranks < n_masked  # the n_masked least confident draws
            tokens = torch.where(masked, self.mask_token, drawn)
            history.append(int(masked.sum(dim=1).max()))
        return tokens, history
