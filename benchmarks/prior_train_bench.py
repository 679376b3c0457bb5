"""Section f: prior training throughput in code tokens/s (forward, loss, backward, AdamW step).

Each prior as shipped against the same network in the recipe before (dropout on the attention weights, GPT's
tanh-approximated GELU, MaskGIT's dropout on its FFN hidden): on a CPU, attention dropout sends scaled-dot-product
attention to its unfused path and random numbers are slow. Both start from the same weights and batch and are
timed round-robin; bf16 autocast of the shipped one is in the note.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import torch

from .results import Row, throughput_gain
from .timing import Settings, median, time_round_robin

SECTION = "f. prior training"
UNIT = "tokens/s"


def _before(prior):
    """The same prior with the previous training recipe (same weights)."""
    before = copy.deepcopy(prior)
    if prior.saved_as == "gpt":
        from transformers import GPT2LMHeadModel

        config = copy.deepcopy(prior.model.config)
        config.attn_pdrop, config.activation_function = prior.config.gpt.dropout, "gelu_new"  # the recipe before
        before.model = GPT2LMHeadModel(config)
        before.model.load_state_dict(prior.model.state_dict())
    else:
        for layer in before.encoder.layers:
            layer.self_attn.dropout = prior.config.maskgit.dropout
            layer.dropout = torch.nn.Dropout(prior.config.maskgit.dropout)
    return before


def _train_step(prior, codes: torch.Tensor, labels: torch.Tensor, bf16: bool = False):
    prior = copy.deepcopy(prior).train()
    optimizer = torch.optim.AdamW(prior.parameters(), lr=1e-3)
    device = codes.device.type

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16) if bf16 else nullcontext():
            loss = prior.loss(codes, labels)
        loss.backward()
        optimizer.step()

    return step


def run(settings: Settings) -> list[Row]:
    from stage2_prior.config import PriorConfig
    from stage2_prior.registry import build_prior

    batch, grid, width = (8, 4, 32) if settings.quick else (128, 8, 128)
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 512, (batch, grid, grid), generator=generator).to(settings.device)
    labels = torch.randint(0, 10, (batch,), generator=generator).to(settings.device)
    tokens = batch * grid * grid
    rows = []
    for arch in ("gpt", "maskgit"):
        torch.manual_seed(0)
        config = PriorConfig(arch=arch, grid=[grid, grid], codebook_sizes=[512], num_classes=10,
                             **{arch: {"n_layer": 4, "n_head": 4, "n_embd": width, "dropout": 0.1}})
        prior = build_prior(config).to(settings.device)
        steps = {"ours": _train_step(prior, codes, labels), "before": _train_step(_before(prior), codes, labels),
                 "ours bf16": _train_step(prior, codes, labels, bf16=True)}
        seconds = time_round_robin(steps, settings)
        rates = {name: tokens / median(times) for name, times in seconds.items()}
        note = (f"{grid}x{grid} codes, K=512, 10 classes, batch {batch}, 4 layers x {width}, dropout 0.1; "
                f"bf16 autocast {rates['ours bf16']:,.0f} tokens/s")
        before_is = "attention dropout, tanh GELU" if arch == "gpt" else "attention and FFN-hidden dropout"
        rows.append(Row(SECTION, f"{arch}, 4 x {width}", UNIT, rates["ours"], rates["before"], f"before: {before_is}",
                        throughput_gain(rates["ours"], rates["before"]), None, note,
                        {k: [tokens / s for s in v] for k, v in seconds.items()}))
    return rows
