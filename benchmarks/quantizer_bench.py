"""Section a: one quantizer forward + backward, ours against vector-quantize-pytorch configured the same way.

Both sides get the very same ``[B, D, H, W]`` tensor and the same upstream gradient: ours takes images natively and
the peer is built with ``accept_image_fmap`` (or its own channel-first handling for FSQ/LFQ), so each side pays
its own layout conversion inside the timed call. Both run in training mode, so EMA updates, usage statistics and
entropy penalties are all part of the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from .results import Row, skipped, speedup
from .timing import Settings, median, time_round_robin

SECTION = "a. quantizer fwd+bwd"
UNIT = "ms/call"


@dataclass
class QuantizerCase:
    label: str
    ours_name: str
    ours_options: dict[str, Any]
    build_peer: Callable[[Any, int], nn.Module]  # (the peer module, dim) -> a module in training mode
    target: float | None  # promised speed-up over the peer
    peer_note: str = ""


class ImagesAsTokens(nn.Module):
    """``[B, D, H, W]`` in and out around a peer module that takes ``[B, HW, D]`` tokens.

    ResidualVQ 1.32 fails on image inputs (``accept_image_fmap=True`` breaks its residual concatenation), so the
    peer gets tokens and pays the two layout conversions inside the timed call, as ours does internally.
    """

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor):
        batch, dim, height, width = x.shape
        z_q, *rest = self.inner(x.flatten(2).transpose(1, 2))
        return (z_q.transpose(1, 2).reshape(batch, dim, height, width), *rest)


def _peer_vq(K: int, learnable: bool) -> Callable[[Any, int], nn.Module]:
    def build(peer, dim: int) -> nn.Module:
        if learnable:
            # The peer's gradient-learned codebook: no EMA, codebook moved by the (commitment-weighted) loss.
            return peer.VectorQuantize(dim=dim, codebook_size=K, commitment_weight=0.25, accept_image_fmap=True,
                                       kmeans_init=False, ema_update=False, learnable_codebook=True)
        return peer.VectorQuantize(dim=dim, codebook_size=K, decay=0.8, commitment_weight=0.25,
                                   accept_image_fmap=True, kmeans_init=False)

    return build


def cases(quick: bool) -> list[QuantizerCase]:
    sizes = (16,) if quick else (512, 8192)
    rows: list[QuantizerCase] = []
    for K in sizes:
        target = 5.0 if K <= 512 else 3.0
        rows.append(QuantizerCase(f"vq K={K}", "vq", {"codebook_size": K, "beta": 0.25}, _peer_vq(K, True),
                                  target, "peer: learnable_codebook=True, ema_update=False"))
        rows.append(QuantizerCase(f"ema K={K} (decay 0.8)", "ema", {"codebook_size": K, "beta": 0.25, "decay": 0.8},
                                  _peer_vq(K, False), target))
    rows.append(QuantizerCase("fsq 8-8-8-5-5-5", "fsq", {"levels": [8, 8, 8, 5, 5, 5]},
                              lambda peer, dim: peer.FSQ(levels=[8, 8, 8, 5, 5, 5], dim=dim), 1.0,
                              "target: no slower"))
    bits = 4 if quick else 10
    rows.append(QuantizerCase(
        f"lfq 2^{bits} (entropy loss on)", "lfq",
        {"bits": bits, "commitment_weight": 0.25, "entropy_weight": 0.1},
        lambda peer, dim: peer.LFQ(dim=dim, codebook_size=2**bits, entropy_loss_weight=0.1,
                                   commitment_loss_weight=0.25),
        10.0))
    rvq_size = 16 if quick else 512
    rows.append(QuantizerCase(
        f"rvq 4 x {rvq_size} (ema 0.8)", "rvq",
        {"codebook_size": rvq_size, "depth": 4, "beta": 0.25, "ema": True, "decay": 0.8},
        lambda peer, dim: ImagesAsTokens(peer.ResidualVQ(dim=dim, num_quantizers=4, codebook_size=rvq_size,
                                                         decay=0.8, commitment_weight=0.25)),
        3.0, "both EMA codebooks (the peer's default); peer fed [B, HW, D] tokens, conversion timed"))
    return rows


PEER_DISTRIBUTION = "vector-quantize-pytorch"


def peer_version() -> str | None:
    """The installed peer's version without importing it (its import alone takes seconds: einx)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PEER_DISTRIBUTION)
    except PackageNotFoundError:
        return None


def load_peer():
    """The peer module and its version, or (None, why) when the bench group is not installed."""
    try:
        import vector_quantize_pytorch as peer
    except ImportError as err:
        return None, f"{PEER_DISTRIBUTION} not installed ({err}); `uv sync --group bench`"
    return peer, peer_version()


def _ours_outputs(out) -> tuple[torch.Tensor, torch.Tensor | None]:
    return out.z_q, out.loss


def _peer_outputs(out) -> tuple[torch.Tensor, torch.Tensor | None]:
    # VectorQuantize/LFQ/ResidualVQ return (z_q, indices, loss); FSQ returns (z_q, indices) and has no loss.
    # ResidualVQ's loss holds one value per level; the sum is what a training loop would add.
    return out[0], (out[2].sum() if len(out) == 3 else None)


def _step(module: nn.Module, unpack, z: torch.Tensor, grad: torch.Tensor, settings: Settings) -> Callable[[], None]:
    """Forward, then backward of the same upstream gradient on z_q plus the quantizer's own loss."""

    def step() -> None:
        x = z.detach().requires_grad_()
        with settings.autocast():
            z_q, loss = unpack(module(x))
        tensors, grads = [z_q], [grad.to(z_q.dtype)]
        if loss is not None and loss.requires_grad:  # FSQ's loss is a constant zero
            tensors.append(loss)
            grads.append(None)
        torch.autograd.backward(tensors, grads)

    return step


def run(settings: Settings) -> list[Row]:
    from stage1_tokenizer.quantizers import QUANTIZERS, build_quantizer

    batch, dim, side = (8, 16, 4) if settings.quick else (256, 64, 8)
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(batch, dim, side, side, generator=generator).to(settings.device)
    grad = torch.randn(z.shape, generator=generator).to(settings.device)
    if settings.cuda:
        z, grad = z.contiguous(memory_format=torch.channels_last), grad.contiguous(memory_format=torch.channels_last)
    peer, peer_version = load_peer()
    peer_name = f"vector-quantize-pytorch {peer_version}" if peer else "vector-quantize-pytorch"
    shape_note = f"N={batch * side * side} vectors ({batch} x {side}x{side}), D={dim}"

    rows: list[Row] = []
    for case in cases(settings.quick):
        if case.ours_name not in QUANTIZERS:
            why = f"quantizer {case.ours_name!r} not registered yet"
            rows.append(skipped(SECTION, case.label, UNIT, why, peer_name))
            continue
        torch.manual_seed(0)
        ours = build_quantizer(case.ours_name, dim, case.ours_options).to(settings.device).train()
        calls = {"ours": _step(ours, _ours_outputs, z, grad, settings)}
        if peer is not None:
            peer_module = case.build_peer(peer, dim).to(settings.device).train()
            calls["peer"] = _step(peer_module, _peer_outputs, z, grad, settings)
        seconds = time_round_robin(calls, settings)
        ours_ms = median(seconds["ours"]) * 1e3
        peer_ms = median(seconds["peer"]) * 1e3 if "peer" in seconds else None
        notes = [shape_note] + ([case.peer_note] if case.peer_note else [])
        if peer is None:
            notes.append(f"peer skipped: {peer_version}")
        rows.append(Row(SECTION, case.label, UNIT, ours_ms, peer_ms, peer_name, speedup(ours_ms, peer_ms),
                        case.target, "; ".join(notes), {k: [s * 1e3 for s in v] for k, v in seconds.items()}))
    return rows
