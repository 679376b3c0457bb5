"""The VQ layer as most tutorials write it: the baseline of section b, written here so nothing else depends on it.

Distances by broadcasting every vector against every code (an ``[N, K, D]`` temporary), the nearest code as a
one-hot ``[N, K]`` matrix, and the quantized vectors as that matrix times the codebook. Same maths as our ``vq``
quantizer (codebook loss + beta * commitment, straight-through), so the two tokenizers train the same model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stage1_tokenizer.quantizers import QuantizerOutput


class OneHotVectorQuantizer(nn.Module):
    def __init__(self, embed_dim: int, codebook_size: int, beta: float = 0.25):
        super().__init__()
        self.embed_dim, self.codebook_size, self.beta = embed_dim, codebook_size, beta
        self.codebook = nn.Embedding(codebook_size, embed_dim)
        self.codebook.weight.data.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
        self.codebook_sizes = [codebook_size]

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        z_last = z.permute(0, 2, 3, 1).contiguous()
        flat = z_last.view(-1, self.embed_dim)
        distances = (flat[:, None, :] - self.codebook.weight[None, :, :]).pow(2).sum(-1)
        indices = distances.argmin(1)
        one_hot = torch.zeros(flat.shape[0], self.codebook_size, device=z.device, dtype=flat.dtype)
        one_hot.scatter_(1, indices[:, None], 1.0)
        quantized = (one_hot @ self.codebook.weight).view_as(z_last)

        codebook_loss = F.mse_loss(quantized, z_last.detach())
        commitment_loss = F.mse_loss(z_last, quantized.detach())
        quantized = z_last + (quantized - z_last).detach()

        usage = one_hot.mean(0)
        perplexity = torch.exp(-(usage * torch.log(usage + 1e-10)).sum())
        codes = indices.view(*z_last.shape[:-1], 1)
        return QuantizerOutput(quantized.permute(0, 3, 1, 2).contiguous(), codes,
                               codebook_loss + self.beta * commitment_loss, {"perplexity": perplexity.detach()})
