"""VQ-VAE-2 priors: the bottom GPT conditioned on the top codes, sampled top then bottom."""

import torch

from stage2_prior.config import GPTConfig, PriorConfig
from stage2_prior.hierarchical import HierarchicalPrior
from stage2_prior.persistence import load_prior, save_prior


def stack(num_classes=0):
    torch.manual_seed(0)
    gpt = GPTConfig(n_layer=1, n_head=2, n_embd=16, dropout=0.0)
    return HierarchicalPrior({
        "top": PriorConfig(grid=[2, 2], codebook_sizes=[5], num_classes=num_classes, gpt=gpt),
        "bottom": PriorConfig(grid=[4, 4], codebook_sizes=[7], num_classes=num_classes, gpt=gpt,
                              context_level="top", context_grid=[2, 2], context_codebook_sizes=[5]),
    }).eval()


def test_sampling_shapes_ranges_and_seed():
    prior = stack(num_classes=3)
    labels = torch.tensor([0, 1, 2])
    codes = prior.sample(3, labels, generator=torch.Generator().manual_seed(0))
    assert codes["top"].shape == (3, 2, 2, 1) and codes["bottom"].shape == (3, 4, 4, 1)
    assert codes["top"].max() < 5 and codes["bottom"].max() < 7 and codes["bottom"].min() >= 0
    again = prior.sample(3, labels, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(codes[k], again[k]) for k in codes)


def test_bottom_prior_sees_the_top_codes_and_cache_matches():
    prior = stack()
    bottom = prior.priors["bottom"]
    codes = torch.randint(0, 7, (2, 4, 4, 1))
    top_a = torch.zeros(2, 2, 2, 1, dtype=torch.long)
    top_b = torch.full((2, 2, 2, 1), 4, dtype=torch.long)
    assert not torch.allclose(bottom.loss(codes, context=top_a), bottom.loss(codes, context=top_b))
    cached = bottom.sample(2, generator=torch.Generator().manual_seed(1), context=top_a)
    full = bottom.sample(2, generator=torch.Generator().manual_seed(1), context=top_a, use_cache=False)
    assert torch.equal(cached, full)


def test_loss_weights_levels_by_code_count_and_save_load(tmp_path):
    prior = stack()
    codes = {"top": torch.randint(0, 5, (2, 2, 2, 1)), "bottom": torch.randint(0, 7, (2, 4, 4, 1))}
    top = prior.priors["top"].loss(codes["top"])
    bottom = prior.priors["bottom"].loss(codes["bottom"], context=codes["top"])
    assert torch.allclose(prior.loss(codes), (4 * top + 16 * bottom) / 20)
    save_prior(prior, tmp_path / "p", {"tokenizer_sha256": "x"})
    loaded, provenance = load_prior(tmp_path / "p")
    assert provenance["tokenizer_sha256"] == "x"
    assert torch.allclose(loaded.loss(codes), prior.loss(codes))


def test_vqvae2_chain_trains_stacked_prior_and_samples_both_levels(tmp_path):
    from pipeline.config import load_config
    from pipeline.core.code_dataset import CodeDataset
    from pipeline.run_paths import RunPaths
    from pipeline.steps import prior as prior_step
    from pipeline.steps import sample, tokenize, tokenizer

    cfg = load_config([], [
        f"run_dir={tmp_path}", "data.image_size=16", "tokenizer.arch=vqvae2", "tokenizer.downsample=2",
        "tokenizer.hidden_channels=16", "tokenizer.res_channels=8", "tokenizer.n_res_blocks=1",
        "tokenizer.embed_dim=8", "tokenizer.quantizer.codebook_size=16", "tokenizer.train.max_steps=3",
        "prior.gpt.n_layer=1", "prior.gpt.n_head=2", "prior.gpt.n_embd=16", "prior.train.max_steps=3",
        "sample.n=5", "sample.batch_size=3",
    ])
    paths = RunPaths(tmp_path)
    tokenizer.run(cfg, paths.tokenizer)
    tokenize.run(cfg, paths.tokenizer, tmp_path / "codes")
    codes = CodeDataset(tmp_path / "codes" / "train", all_levels=True)
    assert codes.stacked and list(codes.levels) == ["top", "bottom"]
    prior_step.run(cfg, tmp_path / "codes", paths.prior("gpt"))
    prior, provenance = load_prior(paths.prior("gpt"))
    assert isinstance(prior, HierarchicalPrior) and provenance["test_bits_per_code"] > 0
    sample.run(cfg, paths.prior("gpt"), paths.tokenizer, paths.samples("gpt"))
    from pipeline.core.files import load_tensors

    sampled = load_tensors(paths.samples("gpt") / "codes.safetensors")
    assert sampled["top"].shape == (5, 4, 4, 1) and sampled["bottom"].shape == (5, 8, 8, 1)
    assert len(list((paths.samples("gpt") / "png").iterdir())) == 5
