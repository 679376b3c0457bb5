"""Section b: tokenizer training throughput, our VQ-VAE against the same network with the tutorial one-hot VQ.

One step = forward, reconstruction MSE + quantizer loss, backward, Adam. Both models start from the same weights
(the naive one is a copy of ours with its quantizer swapped), train on the same random batch, and are timed
round-robin. On CUDA: bf16 autocast (the quantizers keep distances in fp32), channels_last, and with ``--compile``
both models go through ``torch.compile``.

A second row compares how our own model trains on this device: the default (channels_last, fp32 on a CPU) against
plain NCHW fp32 (before), with bf16 autocast (and ``--compile``) timed in the same round-robin for the note.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from .naive_vq import OneHotVectorQuantizer
from .results import Row, throughput_gain
from .timing import Settings, median, time_round_robin

SECTION = "b. tokenizer training"
UNIT = "images/s"
TARGET = 1.5


def _train_step(model, images: torch.Tensor, settings: Settings):
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    forward = torch.compile(model) if settings.compile else model

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with settings.autocast():
            recon, quantized = forward(images)
            loss = F.mse_loss(recon.float(), images) + quantized.loss
        loss.backward()
        optimizer.step()

    return step


def _variant_step(model, images: torch.Tensor, channels_last: bool, bf16: bool, compiled: bool):
    model = copy.deepcopy(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    forward = torch.compile(model) if compiled else model
    device = images.device.type

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            recon, quantized = forward(images)
            loss = F.mse_loss(recon.float(), images) + quantized.loss
        loss.backward()
        optimizer.step()

    return step


def layout_row(settings: Settings, model, images: torch.Tensor, label: str) -> Row:
    """Our training step: channels_last (the default) against NCHW fp32, bf16 and compile alongside."""
    variants = {"nchw fp32": (False, False, False), "channels_last fp32": (True, False, False),
                "channels_last bf16": (True, True, False)}
    if settings.compile:
        variants["channels_last fp32 compiled"] = (True, False, True)
    steps = {name: _variant_step(model, images, *flags) for name, flags in variants.items()}
    seconds = time_round_robin(steps, settings)
    batch = images.shape[0]
    rates = {name: batch / median(times) for name, times in seconds.items()}
    ours, before = rates["channels_last fp32"], rates["nchw fp32"]
    note = ", ".join(f"{name} {rate:,.0f}" for name, rate in rates.items()) + " images/s"
    return Row(SECTION, f"{label}: channels_last (default) vs NCHW", UNIT, ours, before, "NCHW fp32 (before)",
               throughput_gain(ours, before), None, note, {k: [batch / s for s in v] for k, v in seconds.items()})


def run(settings: Settings) -> list[Row]:
    from stage1_tokenizer.config import TokenizerConfig
    from stage1_tokenizer.tokenizer import build_tokenizer

    batch, size, codebook_size, hidden = (8, 16, 16, 16) if settings.quick else (128, 32, 512, 64)
    rows = []
    for label, channels in [("MNIST shapes", 1), ("CIFAR shapes", 3)]:
        config = TokenizerConfig(in_channels=channels, image_size=size, hidden_channels=hidden,
                                 res_channels=hidden // 2, embed_dim=64,
                                 quantizer={"name": "vq", "codebook_size": codebook_size, "beta": 0.25})
        torch.manual_seed(0)
        ours = build_tokenizer(config)
        naive = copy.deepcopy(ours)
        naive.quantizer = OneHotVectorQuantizer(config.embed_dim, codebook_size, beta=0.25)
        images = torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
        images = images.to(settings.device)
        if settings.cuda:
            ours, naive = (m.to(settings.device, memory_format=torch.channels_last) for m in (ours, naive))
            images = images.contiguous(memory_format=torch.channels_last)
        ours.train()
        naive.train()
        seconds = time_round_robin({"ours": _train_step(ours, images, settings),
                                    "naive": _train_step(naive, images, settings)}, settings)
        ours_rate = batch / median(seconds["ours"])
        naive_rate = batch / median(seconds["naive"])
        grid = size // config.downsample
        note = (f"{channels}x{size}x{size}, batch {batch}, VQ K={codebook_size} D=64 on a {grid}x{grid} grid, "
                f"{'compiled, ' if settings.compile else ''}Adam step included")
        rows.append(Row(SECTION, label, UNIT, ours_rate, naive_rate, "naive one-hot VQ (tutorial)",
                        throughput_gain(ours_rate, naive_rate), TARGET, note,
                        {k: [batch / s for s in v] for k, v in seconds.items()}))
        if channels == 1 and not settings.cuda:
            rows.append(layout_row(settings, ours, images, label))
    return rows
