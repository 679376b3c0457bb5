"""The usage-entropy loss of looked-up codebooks with a hand-written backward, block by block over the rows.

``p(k|x) = softmax(-||x - e_k||^2 / (T s))`` over ``K`` codes. Written with autograd, the ``[N, K]`` probabilities
go through a dozen full passes (distances, clamp, scale, log-softmax, exp, products and their backwards), which on
a CPU cost as much as the rest of a VQ-VAE step. Here only the log-probabilities are kept; every other ``[N, K]``
temporary lives for one block of rows, in cache: 1.8x faster than autograd at N = 8192, K = 512, d = 64 (README).
Logits more than ``-LOG_FLOOR`` below their row's largest are raised to that floor before ``exp``: on a CPU, ``exp``
of an argument under about -87 (a denormal or zero result) takes a scalar path 50x slower than the vectorised one,
and at the default temperature most of a trained codebook is that far from a row. The floor adds under ``K e^-60``
of probability mass to a row, and a code beyond it gets a gradient of order ``e^-60`` (true value: smaller still),
far under Adam's epsilon, so it does not move a code that the loss leaves alone; the results stay normal floats.

The maths, for one group, with ``a`` the logits, ``H_n`` the row entropies and ``m = mean_n p_n``:

- ``||x||^2`` is constant along a row and cancels in the softmax, so ``a = (2 x.e_k - ||e_k||^2) / (T s)``;
- ``dH_n / da_nk = -p_nk (log p_nk + H_n)``;
- ``dH(m) / da_nk = p_nk (<p_n, log m> - log m_k) / N``;
- ``a`` is linear in ``x`` and quadratic in ``e``: ``dx_n = (2 / Ts) sum_k G_nk e_k``,
  ``de_k = (2 / Ts) (sum_n G_nk x_n - (sum_n G_nk) e_k)`` for ``G = dL/da``.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

BLOCK_ROWS = 512  # [512, K] fp32 temporaries: 1 MiB at K = 512, within a core's L2
LOG_FLOOR = -60.0  # logits below their row's maximum by more are raised to it (module docstring)


class _UsageEntropies(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, vectors: torch.Tensor, inv_scales: torch.Tensor):
        groups, n, _ = x.shape
        sq_norms = vectors.pow(2).sum(-1)  # [G, K]
        log_probs = x.new_empty(groups, n, vectors.shape[1])
        row_entropies = x.new_empty(groups, n)
        mean_probs = x.new_zeros(groups, vectors.shape[1])
        for g in range(groups):
            inv = float(inv_scales[g])
            for start in range(0, n, BLOCK_ROWS):
                rows = slice(start, start + BLOCK_ROWS)
                log_p = log_probs[g, rows]  # a view: filled in place
                torch.addmm(sq_norms[g], x[g, rows], vectors[g].t(), beta=-inv, alpha=2.0 * inv, out=log_p)
                log_p.sub_(log_p.amax(-1, keepdim=True)).clamp_min_(LOG_FLOOR)
                p = log_p.exp()
                total = p.sum(-1, keepdim=True)
                log_p.sub_(total.log())
                p.div_(total)
                row_entropies[g, rows] = -torch.linalg.vecdot(p, log_p)
                mean_probs[g] += p.sum(0)
        mean_probs /= n
        codebook_entropy = -(mean_probs * mean_probs.clamp_min(1e-12).log()).sum(-1).mean()
        ctx.save_for_backward(x, vectors, inv_scales, log_probs, row_entropies, mean_probs)
        return row_entropies.mean(), codebook_entropy

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_sample: torch.Tensor, grad_codebook: torch.Tensor):
        x, vectors, inv_scales, log_probs, row_entropies, mean_probs = ctx.saved_tensors
        groups, n, _ = x.shape
        log_mean = mean_probs.clamp_min(1e-12).log()  # [G, K]
        w_sample = grad_sample / (groups * n)  # the sample entropy is a mean over every row of every group
        w_codebook = grad_codebook / (groups * n)  # the codebook entropy: a mean over groups of H(mean over n)
        grad_x = torch.zeros_like(x)
        grad_vectors = torch.zeros_like(vectors) if ctx.needs_input_grad[1] else None  # EMA codes take none
        for g in range(groups):
            scale = 2.0 * float(inv_scales[g])
            for start in range(0, n, BLOCK_ROWS):
                rows = slice(start, start + BLOCK_ROWS)
                log_p = log_probs[g, rows]
                p = log_p.exp()
                # G = p * (-w_s log p + (w_c <p, log m> - w_s H) - w_c log m): a row term and a column term
                row_term = w_codebook * (p @ log_mean[g]) - w_sample * row_entropies[g, rows]
                grad_logits = torch.mul(log_p, -w_sample).add_(row_term[:, None]).sub_(w_codebook * log_mean[g])
                grad_logits.mul_(p)
                grad_x[g, rows] = scale * (grad_logits @ vectors[g])
                if grad_vectors is not None:
                    grad_vectors[g] += scale * (grad_logits.t() @ x[g, rows]
                                                - grad_logits.sum(0)[:, None] * vectors[g])
        return grad_x, grad_vectors, None


def usage_entropies(x: torch.Tensor, vectors: torch.Tensor, nearest: torch.Tensor,
                    temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean per-position entropy and entropy of the batch-mean distribution of ``p(k|x)``, averaged over groups.

    ``x [G, N, d]`` against ``vectors [G, K, d]``, with ``nearest [G, N, d]`` the code each row was quantized to;
    ``p(k|x) = softmax(-||x - e_k||^2 / (temperature * s))`` with ``s`` the group's mean squared distance to the
    nearest code (no gradient), so the temperature means the same whatever the encoder's scale. At least fp32
    (bf16 inputs are promoted); gradients reach ``x`` and ``vectors``.
    """
    dtype = torch.promote_types(x.dtype, torch.float32)
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, vectors = x.to(dtype), vectors.to(dtype)
        with torch.no_grad():
            scales = (x - nearest.to(dtype)).pow(2).sum(-1).mean(-1).clamp_min(1e-12)
        return _UsageEntropies.apply(x, vectors, 1.0 / (temperature * scales))
