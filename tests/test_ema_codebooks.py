"""EMA-learned codes are a codebook option (``ema: true``) of vq, rvq and pq, and ``ema`` is the preset of vq with
it on: the same class, weights, codes, loss and update as ``vq`` with ``ema: true``, and the rvq and pq codebooks
learn by the same running averages, with no gradient reaching them."""

from __future__ import annotations

import pytest
import torch

from stage1_tokenizer.quantizers import build_quantizer, make_quantizer_config
from stage1_tokenizer.quantizers.vq import VectorQuantizer

OPTIONS = {"codebook_size": 4, "beta": 0.4, "decay": 0.5, "eps": 0.1}


def batch(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 2, 3, 3, generator=torch.Generator().manual_seed(seed)).requires_grad_(True)


def built(name: str, options: dict):
    torch.manual_seed(0)  # every codebook draws its init from the global generator
    return build_quantizer(name, 2, options).train()


def test_the_ema_preset_is_vq_with_ema_on():
    preset, vq = make_quantizer_config("ema", OPTIONS), make_quantizer_config("vq", {**OPTIONS, "ema": True})
    assert {**dict(preset), "name": "vq"} == dict(vq)  # every option the same, defaults included
    ema, plain = built("ema", OPTIONS), built("vq", {**OPTIONS, "ema": True})
    assert type(ema) is type(plain) is VectorQuantizer
    for step in range(3):
        out_ema, out_vq = ema(batch(step)), plain(batch(step))
        assert torch.equal(out_ema.codes, out_vq.codes) and torch.equal(out_ema.z_q, out_vq.z_q)
        assert out_ema.loss.item() == out_vq.loss.item()
    assert ema.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(ema.state_dict()[key], plain.state_dict()[key]) for key in ema.state_dict())


def test_the_ema_preset_cannot_turn_ema_off():
    with pytest.raises(ValueError, match="option 'ema'"):
        make_quantizer_config("ema", {"ema": False})


def codebooks(quantizer) -> list:
    return list(quantizer.levels) if hasattr(quantizer, "levels") else [quantizer.codebook]


@pytest.mark.parametrize("name, shape", [("rvq", {"depth": 1}), ("pq", {"groups": 1})])
def test_rvq_and_pq_with_ema_update_their_codes_as_the_ema_preset_does(name, shape):
    """One level (one group) with EMA on is the ema preset: same init, codes, loss and updated codes."""
    reference, quantizer = built("ema", OPTIONS), built(name, {**OPTIONS, **shape, "ema": True})
    (book,) = codebooks(quantizer)
    assert torch.equal(book.weight, reference.codebook.weight)
    before = book.weight.clone()
    z = batch()
    out, expected = quantizer(z), reference(z.detach())
    assert torch.equal(out.codes, expected.codes)
    assert out.loss.item() == pytest.approx(expected.loss.item(), rel=1e-6)
    assert torch.allclose(book.weight, reference.codebook.weight, atol=1e-6)
    assert not torch.equal(book.weight, before)  # the step moved the codes, without any optimiser


@pytest.mark.parametrize("name, shape", [("rvq", {"depth": 3}), ("pq", {"groups": 2})])
def test_ema_codes_of_rvq_and_pq_get_no_gradient(name, shape):
    quantizer = built(name, {**OPTIONS, **shape, "ema": True})
    books = codebooks(quantizer)
    assert all(book.learned_by_ema for book in books)
    assert not any(True for book in books for _ in book.parameters())  # the codes are buffers
    z = batch()
    before = [book.weight.clone() for book in books]
    quantizer(z).loss.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()  # the encoder still gets its commitment gradient
    assert all(book.weight.grad is None and not book.weight.requires_grad for book in books)
    assert all(not torch.equal(book.weight, old) for book, old in zip(books, before))


@pytest.mark.parametrize("name, shape", [("rvq", {"depth": 2}), ("pq", {"groups": 2})])
def test_without_ema_rvq_and_pq_codes_learn_by_gradient(name, shape):
    quantizer = built(name, {**OPTIONS, **shape})
    quantizer(batch()).loss.backward()
    assert all(not book.learned_by_ema and book.weight.grad is not None for book in codebooks(quantizer))
