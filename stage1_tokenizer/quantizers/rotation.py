"""The rotation trick (Fifty et al. 2024, "Restructuring Vector Quantization with the Rotation Trick").

Straight-through copies the decoder's gradient to the encoder output unchanged, whatever the angle between
the output ``e`` and its code ``q``. The rotation trick instead passes ``e`` through the linear map that sends
it onto ``q``: a rotation ``R`` (taking the direction of ``e`` to that of ``q``) and a rescaling
``||q|| / ||e||``, both treated as constants. The forward value is still ``q``; the gradient reaching ``e`` is
``(||q|| / ||e||) R^T g``, so it keeps track of where inside the Voronoi cell ``e`` sits.

With unit vectors ``u = e / ||e||``, ``v = q / ||q||`` and ``r = (u + v) / ||u + v||``,
``R = I - 2 r r^T + 2 v u^T`` (a Householder reflection through ``r`` followed by one that maps ``u`` to ``v``);
it is applied to each row without building any ``d x d`` matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rotate_onto_codes(x: torch.Tensor, quantized: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Rows of ``x [N, d]`` mapped onto ``quantized [N, d]``; gradient to ``x`` through the constant ``scale * R``."""
    with torch.no_grad():
        x_norm = x.norm(dim=-1, keepdim=True).clamp_min(eps)
        q_norm = quantized.norm(dim=-1, keepdim=True)
        u = x / x_norm
        v = quantized / q_norm.clamp_min(eps)
        r = F.normalize(u + v, dim=-1, eps=eps)  # when q points opposite to e, r = 0 and R maps u to -u = v
        scale = q_norm / x_norm
    rotated = scale * (x - 2.0 * r * (r * x).sum(-1, keepdim=True) + 2.0 * v * (u * x).sum(-1, keepdim=True))
    # The map is exact up to rounding; this makes the forward value the code itself, bit for bit like straight-through.
    return rotated + (quantized - rotated).detach()
