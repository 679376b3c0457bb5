"""Plain VQ: straight-through gradient, codes -> decode round trip, loss terms against a hand computation."""

import torch

from stage1_tokenizer.quantizers import build_quantizer
from stage1_tokenizer.quantizers.distances import nearest_code


def make_vq(k=4, d=2, beta=0.25):
    vq = build_quantizer("vq", d, {"codebook_size": k, "beta": beta})
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])[:k])
    return vq


def test_nearest_code_and_loss_match_hand_computation():
    vq = make_vq(beta=0.25)
    # Two positions: (0.9, 0.2) is nearest code 1 = (1, 0); (0.2, 0.7) is nearest code 2 = (0, 1).
    z = torch.tensor([[0.9, 0.2], [0.2, 0.7]]).t().reshape(1, 2, 1, 2)  # [B=1, D=2, H=1, W=2]
    out = vq(z)
    assert out.codes.tolist() == [[[[1], [2]]]]
    # squared errors: (0.1^2 + 0.2^2) and (0.2^2 + 0.3^2), averaged over the 4 elements
    mse = (0.01 + 0.04 + 0.04 + 0.09) / 4
    assert torch.allclose(out.stats["codebook_loss"], torch.tensor(mse))
    assert torch.allclose(out.stats["commitment_loss"], torch.tensor(mse))
    assert torch.allclose(out.loss, torch.tensor(mse * 1.25))


def test_beta_weights_the_encoder_term_only():
    vq = make_vq(beta=0.5)
    z = torch.tensor([[0.9, 0.2], [0.2, 0.7]]).t().reshape(1, 2, 1, 2).requires_grad_(True)
    out = vq(z)
    out.loss.backward()
    # d/dz of beta * mean((z - e)^2) = beta * 2 (z - e) / numel ; the codebook term sends nothing to z.
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).t().reshape(1, 2, 1, 2)
    expected = 0.5 * 2 * (z.detach() - e) / z.numel()
    assert torch.allclose(z.grad, expected, atol=1e-6)
    # and the codebook gets 2 (e - z) / numel (weight 1), only on the used rows
    grad = vq.codebook.weight.grad
    assert torch.allclose(grad[1], 2 * (torch.tensor([1.0, 0.0]) - torch.tensor([0.9, 0.2])) / 4, atol=1e-6)
    assert torch.count_nonzero(grad[0]) == 0 and torch.count_nonzero(grad[3]) == 0


def test_straight_through_gradient_reaches_encoder_unchanged():
    vq = make_vq()
    z = torch.randn(2, 2, 3, 3, requires_grad=True)
    out = vq(z)
    upstream = torch.randn_like(out.z_q)
    (out.z_q * upstream).sum().backward()
    assert torch.allclose(z.grad, upstream)  # identity Jacobian through the quantizer
    assert torch.allclose(out.z_q, vq.decode_codes(out.codes))  # forward value is the code vector


def test_decode_codes_round_trip_in_eval():
    torch.manual_seed(0)
    vq = build_quantizer("vq", 8, {"codebook_size": 32}).eval()
    z = torch.randn(3, 8, 4, 5)
    out = vq(z)
    assert out.codes.shape == (3, 4, 5, 1) and out.codes.dtype == torch.long
    assert vq.codebook_sizes == [32]
    assert torch.equal(vq.decode_codes(out.codes), out.z_q)


def test_chunked_search_equals_full_search():
    torch.manual_seed(0)
    x, codebook = torch.randn(1000, 16), torch.randn(300, 16)
    full = nearest_code(x, codebook)
    chunked = nearest_code(x, codebook, max_elements=300 * 7)  # 7 rows at a time
    brute = torch.cdist(x, codebook).argmin(1)
    assert torch.equal(full, chunked) and torch.equal(full, brute)


def test_usage_is_counted_over_the_epoch_not_the_last_batch():
    vq = make_vq().train()
    e = vq.codebook.weight.detach()
    for code in range(4):  # each batch uses one different code
        vq(e[code].view(1, 2, 1, 1).repeat(1, 1, 2, 2))
    stats = vq.epoch_stats()
    assert stats["usage"] == 1.0 and stats["dead_codes"] == 0
    assert abs(stats["perplexity"] - 4.0) < 1e-6
    assert vq.epoch_stats() == {}  # reset after reading
