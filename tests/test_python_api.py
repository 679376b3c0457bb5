"""The notebook API: the README's Python API snippet runs as written (on tiny models in place of a quickstart run),
and ``Tokenizer.encode``/``decode`` check what they are given and say how to fix it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.core.errors import VqgenError
from stage1_tokenizer import Tokenizer, TokenizerConfig
from stage2_prior import save_prior
from stage2_prior.config import GPTConfig, PriorConfig
from stage2_prior.registry import build_prior

REPO = Path(__file__).resolve().parents[1]


def tiny_tokenizer(arch: str = "vqvae", size: int = 16) -> Tokenizer:
    torch.manual_seed(0)
    return Tokenizer(TokenizerConfig(arch=arch, hidden_channels=16, res_channels=8, n_res_blocks=1, embed_dim=8,
                                     image_size=size, quantizer={"name": "vq", "codebook_size": 16})).eval()


def readme_snippet() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_api_snippet_runs(tmp_path, monkeypatch):
    # Stand-ins for `make quickstart`'s run: the same shapes (1x32x32 digits, an 8x8 grid, 10 classes), tiny widths.
    tokenizer = tiny_tokenizer(size=32)
    tokenizer.network.save(tmp_path / "runs/quickstart/tokenizer", {"data": {"name": "digits"}})
    prior = build_prior(PriorConfig(arch="gpt", grid=[8, 8], codebook_sizes=[16], num_classes=10,
                                    gpt=GPTConfig(n_layer=1, n_head=2, n_embd=16, dropout=0.0)))
    save_prior(prior, tmp_path / "runs/quickstart/prior-gpt", {"tokenizer_sha256": "x"})
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_snippet(), "README.md (Python API)", "exec"), namespace)

    assert {k: tuple(v.shape) for k, v in namespace["codes"].items()} == {"codes": (8, 8, 8, 1)}
    for name, count in (("reconstructions", 8), ("samples", 10)):
        images = namespace[name]
        assert images.shape == (count, 1, 32, 32) and images.min() >= 0 and images.max() <= 1
    assert Tokenizer.from_pretrained("digits-tokenizer").provenance == {"data": {"name": "digits"}}
    assert (tmp_path / "digits-tokenizer" / "README.md").exists()


def test_encode_takes_uint8_or_unit_floats_alike():
    tokenizer = tiny_tokenizer()
    images = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)
    codes = tokenizer.encode(images)["codes"]
    assert torch.equal(tokenizer.encode(images.float() / 255)["codes"], codes)
    assert torch.equal(tokenizer.encode(images.double() / 255)["codes"], codes)
    assert torch.equal(tokenizer.encode(images.numpy())["codes"], codes)
    # Exactly the network's codes for the same images in its own [-1, 1] convention.
    assert torch.equal(tokenizer.network.encode(images.float() / 127.5 - 1)["codes"], codes)


@pytest.mark.parametrize("images, message", [
    (torch.zeros(2, 1, 16, 16, dtype=torch.int64), "uint8 .0..255. or floats in .0, 1., got torch.int64"),
    (torch.zeros(2, 1, 16, 16, dtype=torch.bool), "got torch.bool"),
    (torch.rand(2, 1, 16, 16) * 2 - 1, r"they look like \[-1, 1\]: pass \(images \+ 1\) / 2"),
    (torch.rand(2, 1, 16, 16) * 255, "they look like 0..255: pass images / 255"),
    (torch.rand(2, 1, 16, 16) * 1000, "rescale them to"),
    (torch.full((2, 1, 16, 16), float("nan")), "NaN or infinite"),
    (torch.zeros(2, 16, 16, 1, dtype=torch.uint8), r"shape \[B, 1, 16, 16\], got \[2, 16, 16, 1\] .channels go first"),
    (torch.zeros(1, 16, 16, dtype=torch.uint8), r"one image: images\[None\]"),
    (torch.zeros(2, 1, 32, 32, dtype=torch.uint8), r"shape \[B, 1, 16, 16\], got \[2, 1, 32, 32\]"),
    (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), r"got \[2, 3, 16, 16\]"),
    ([[0.0] * 16] * 16, "must be a torch.Tensor .or numpy array. .B, 1, 16, 16., got list"),
], ids=["int64", "bool", "minus-one-to-one", "0-255-floats", "out-of-range", "nan", "hwc", "one-image",
        "wrong-size", "wrong-channels", "list"])
def test_encode_refuses_wrong_images_with_a_clear_message(images, message):
    with pytest.raises(VqgenError, match=message):
        tiny_tokenizer().encode(images)


def test_an_empty_batch_is_refused_before_the_network_sees_it():
    with pytest.raises(VqgenError, match="empty batch"):
        tiny_tokenizer().encode(np.zeros((0, 1, 16, 16), dtype=np.float32))


@pytest.mark.parametrize("arch", ["vqvae", "vqvae2"])
def test_decode_gives_unit_floats_and_checks_the_codes(arch):
    tokenizer = tiny_tokenizer(arch)
    codes = tokenizer.encode(torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8))
    images = tokenizer.decode(codes)
    assert images.shape == (2, 1, 16, 16) and images.min() >= 0 and images.max() <= 1
    assert torch.allclose(images, (tokenizer.network.decode(codes).clamp(-1, 1) + 1) / 2)
    first = next(iter(codes))
    with pytest.raises(VqgenError, match="must lie below the codebook sizes"):
        tokenizer.decode({**codes, first: codes[first] + 16})
    with pytest.raises(VqgenError, match="must be integers of shape"):
        tokenizer.decode({**codes, first: codes[first].float()})
    with pytest.raises(VqgenError, match="decode takes codes for the levels"):
        tokenizer.decode({"other": codes[first]})
    if arch == "vqvae":  # one level: a bare tensor is enough (what a prior's sample gives)
        assert torch.equal(tokenizer.decode(codes["codes"]), images)
    else:
        with pytest.raises(VqgenError, match=r"levels \['bottom', 'top'\]"):
            tokenizer.decode(codes["bottom"])
