"""The prior contract for PixelCNN, GPT and MaskGIT: causality and masking, MaskGIT's schedules, seeded sampling,
classifier-free guidance, code shapes for one and several code channels, and that training lowers the loss.
Tiny models (grids of 4x4 or 3x5, vocabularies of 8 and 5) so the whole file runs in seconds on a CPU.
GPT's KV cache against full recomputation is tested in test_gpt.py."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import torch
import yaml

from stage2_prior.config import GPTConfig, MaskGITConfig, MaskSchedule, PixelCNNConfig, PriorConfig, SampleControls
from stage2_prior.maskgit import masked_cross_entropy, random_mask
from stage2_prior.persistence import load_prior, save_prior
from stage2_prior.registry import PRIORS, build_prior
from stage2_prior.sampling import MASK_SCHEDULES, Guidance, guide, mask_fraction, masked_counts

ARCHS = ["pixelcnn", "gpt", "maskgit"]
SCHEDULES = list(typing.get_args(MaskSchedule))
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models run faster on one thread, and on a shared 2-core machine OpenMP barriers make two far slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_prior(arch: str, sizes=(8,), grid=(4, 4), num_classes: int = 0, label_dropout: float = 0.1):
    torch.manual_seed(0)
    config = PriorConfig(
        arch=arch, grid=list(grid), codebook_sizes=list(sizes), num_classes=num_classes,
        label_dropout=label_dropout,
        gpt=GPTConfig(n_layer=2, n_head=2, n_embd=32, dropout=0.0),
        pixelcnn=PixelCNNConfig(n_layers=4, channels=16),
        maskgit=MaskGITConfig(n_layer=2, n_head=2, n_embd=32, dropout=0.0),
    )
    return build_prior(config).eval()


def random_codes(n: int, sizes=(8,), grid=(4, 4), seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, size, (n, *grid), generator=g) for size in sizes], dim=-1)


def make_classes_matter(prior) -> None:
    """Fresh priors barely (PixelCNN: not at all) depend on the class; give the class parameters weight."""
    with torch.no_grad():
        if prior.config.arch == "gpt":
            prior.model.transformer.wte.weight[prior.code_vocab :].normal_(std=1.0)
        for name, param in prior.named_parameters():
            if "class" in name:
                param.normal_(std=1.0)


def sample(prior, n=4, labels=None, seed=0, **controls):
    return prior.sample(n, labels, SampleControls(**controls), generator=torch.Generator().manual_seed(seed))


def finite(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isinf(x), torch.zeros_like(x), x)


# --- PixelCNN causality ---------------------------------------------------------------------------------------

def test_pixelcnn_trunk_sees_exactly_the_earlier_positions():
    """Gradient of the features at p reaches every position before p in raster order (no blind spot: the
    top-right neighbours included) and nothing at or after p."""
    prior = tiny_prior("pixelcnn", grid=(4, 5))
    height, width = prior.config.grid
    x = torch.randn(1, prior.config.pixelcnn.channels, height, width, requires_grad=True)
    classes = torch.zeros(1, dtype=torch.long)
    features = prior.trunk(x, classes)
    raster = torch.arange(height * width).view(height, width)
    for i in range(height):
        for j in range(width):
            (grad,) = torch.autograd.grad(features[0, i, j].sum(), x, retain_graph=True)
            reached = grad[0].abs().sum(0) > 0
            assert torch.equal(reached, raster < raster[i, j]), f"position {(i, j)} reaches\n{reached.int()}"


def test_pixelcnn_sampling_shortcut_matches_the_full_trunk():
    """Sampling runs the vertical stack once per row and the horizontal one on a cropped row; same features."""
    prior = tiny_prior("pixelcnn", sizes=(8, 5), grid=(3, 4), num_classes=3)
    make_classes_matter(prior)
    codes, classes = random_codes(2, (8, 5), (3, 4)), torch.tensor([0, 2])
    with torch.no_grad():
        full = prior.trunk(prior.embed(codes), classes)
        for row in range(3):
            links = prior.row_links(codes, row, classes)
            for col in range(4):
                torch.testing.assert_close(prior.features_at(codes, links, row, col, classes), full[:, row, col])


def test_pixelcnn_channels_are_autoregressive_within_a_position():
    """Changing code (p, c) changes exactly the logits of later positions and of channels > c at p."""
    sizes = (8, 5)
    prior = tiny_prior("pixelcnn", sizes=sizes, grid=(3, 4))
    codes = random_codes(1, sizes, (3, 4))
    classes = torch.zeros(1, dtype=torch.long)
    base = finite(prior.logits(codes, classes))
    height, width, channels = codes.shape[1:]
    order = torch.arange(height * width * channels).view(height, width, channels)  # raster, channels inner
    for i in range(height):
        for j in range(width):
            for c in range(channels):
                changed_codes = codes.clone()
                changed_codes[0, i, j, c] = (codes[0, i, j, c] + 1) % sizes[c]
                changed = (finite(prior.logits(changed_codes, classes)) - base).abs().amax(-1)[0] > 1e-6
                assert torch.equal(changed, order > order[i, j, c]), f"code {(i, j, c)} changes\n{changed.int()}"


# --- GPT and MaskGIT masking ------------------------------------------------------------------------------------

@pytest.mark.parametrize("sizes", [(8,), (8, 5)])
def test_gpt_logits_ignore_future_tokens(sizes):
    prior = tiny_prior("gpt", sizes=sizes)
    tokens = prior.to_tokens(random_codes(2, sizes))
    inputs = torch.cat([prior.condition_tokens(None, 2, "cpu"), tokens[:, :-1]], dim=1)
    base = prior.model(input_ids=inputs).logits
    g = torch.Generator().manual_seed(1)
    for p in range(inputs.shape[1] - 1):
        changed = inputs.clone()
        changed[:, p + 1 :] = torch.randint(0, prior.code_vocab, changed[:, p + 1 :].shape, generator=g)
        logits = prior.model(input_ids=changed).logits
        torch.testing.assert_close(logits[:, : p + 1], base[:, : p + 1])
        assert not torch.allclose(logits[:, p + 1 :], base[:, p + 1 :])


def test_maskgit_loss_counts_only_masked_tokens():
    sizes = (8, 5)
    prior = tiny_prior("maskgit", sizes=sizes)
    tokens = prior.to_tokens(random_codes(3, sizes))
    classes = torch.full((3,), prior.null_class)
    mask = random_mask(torch.tensor([0.2, 0.5, 0.8]), prior.seq_len, "cosine", torch.Generator().manual_seed(0))
    assert mask.any(1).all() and not mask.all()
    logits = prior.raw_logits(tokens.masked_fill(mask, prior.mask_token), classes) + prior.position_bias
    base = masked_cross_entropy(logits, tokens, mask)
    torch.testing.assert_close(prior.masked_loss(tokens, mask, classes), base)

    # Other targets at unmasked tokens: the same loss.
    other = prior.to_tokens(random_codes(3, sizes, seed=1))
    at_unmasked = torch.where(mask, tokens, other)
    torch.testing.assert_close(masked_cross_entropy(logits, at_unmasked, mask), base)
    # Other codes at masked tokens: the model never sees them (only [MASK]), only the targets change.
    at_masked = torch.where(mask, other, tokens)
    torch.testing.assert_close(prior.masked_loss(at_masked, mask, classes),
                               masked_cross_entropy(logits, at_masked, mask))
    assert not torch.allclose(prior.masked_loss(at_masked, mask, classes), base)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_training_masks_follow_the_schedule(schedule):
    ratios = torch.linspace(0, 1, 11)
    mask = random_mask(ratios, 32, schedule, torch.Generator().manual_seed(0))
    expected = torch.ceil(mask_fraction(schedule, ratios) * 32).long().clamp(1, 32)
    assert torch.equal(mask.sum(1), expected)
    assert expected[0] == 32 and expected[-1] == 1


def test_maskgit_eval_loss_is_deterministic():
    prior = tiny_prior("maskgit", sizes=(8, 5))
    codes = random_codes(4, (8, 5))
    assert prior.loss(codes).item() == prior.loss(codes).item()


# --- MaskGIT schedules and decoding -----------------------------------------------------------------------------

def test_schedule_names_match_the_config():
    assert set(SCHEDULES) == set(MASK_SCHEDULES)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedule_endpoints_and_monotone(schedule):
    r = torch.linspace(0, 1, 101, dtype=torch.float64)
    fraction = mask_fraction(schedule, r)
    assert fraction[0] == 1.0  # fully masked at the start
    assert abs(float(fraction[-1])) < 1e-12  # nothing masked at the end
    assert (fraction.diff() <= 0).all()


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_no_mask_remains_after_the_last_step(schedule):
    prior = tiny_prior("maskgit", sizes=(8, 5))
    sizes = torch.tensor(prior.config.codebook_sizes)
    for steps in range(1, 13):
        counts = masked_counts(prior.seq_len, steps, schedule)
        assert len(counts) == steps and counts[-1] == 0
        assert all(later < earlier for earlier, later in zip([prior.seq_len] + counts, counts))
        controls = SampleControls(steps=steps, schedule=schedule)
        tokens, history = prior.decode(2, None, controls, torch.Generator().manual_seed(steps))
        assert history == counts  # the schedule decides how many stay masked after each step
        assert (tokens != prior.mask_token).all()
        codes = prior.to_codes(tokens)
        assert (codes >= 0).all() and (codes < sizes).all()


# --- sampling: seeds, guidance, shapes -------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_sampling_is_deterministic_under_a_seed(arch):
    prior = tiny_prior(arch, sizes=(8, 5), num_classes=3)
    labels = torch.tensor([0, 1, 2, 0])
    controls = dict(temperature=0.9, top_k=6, top_p=0.95, cfg_scale=2.0)
    first = sample(prior, labels=labels, seed=7, **controls)
    assert torch.equal(first, sample(prior, labels=labels, seed=7, **controls))
    assert not torch.equal(first, sample(prior, labels=labels, seed=8, **controls))


@pytest.mark.parametrize("arch", ARCHS)
def test_guidance_scale_zero_is_unconditional_and_one_is_conditional(arch):
    prior = tiny_prior(arch, num_classes=3)
    make_classes_matter(prior)
    labels = torch.tensor([0, 1, 2, 0])
    unconditional = sample(prior, labels=None)
    conditional = sample(prior, labels=labels)
    assert torch.equal(sample(prior, labels=labels, cfg_scale=0.0), unconditional)
    assert torch.equal(sample(prior, labels=labels, cfg_scale=1.0), conditional)
    # The classes reach the model, and a large guidance scale moves the samples away from plain conditional ones.
    codes = random_codes(4)
    assert not torch.allclose(prior.loss(codes, labels), prior.loss(codes, None))
    assert not torch.equal(sample(prior, labels=labels, cfg_scale=10.0), conditional)


def test_guide_and_guidance_batches():
    cond, uncond = torch.randn(3, 5), torch.randn(3, 5)
    torch.testing.assert_close(guide(cond, uncond, 1.0), cond)
    assert torch.equal(guide(cond, uncond, 0.0), uncond)
    classes = torch.tensor([0, 1, 2])
    assert not Guidance(classes, 3, 1.0).doubled and torch.equal(Guidance(classes, 3, 1.0).classes, classes)
    assert not Guidance(classes, 3, 0.0).doubled and (Guidance(classes, 3, 0.0).classes == 3).all()
    guided = Guidance(classes, 3, 2.0)
    assert guided.doubled and guided.expand(torch.zeros(3, 7)).shape == (6, 7)
    assert guided.combine(torch.cat([cond, uncond])).shape == (3, 5)
    assert not Guidance(torch.full((3,), 3), 3, 2.0).doubled  # nothing to guide: all rows unconditional


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("sizes", [(8,), (8, 5)])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_sample_shapes_and_code_ranges(arch, sizes, num_classes):
    grid = (3, 5)  # not square, so rows and columns cannot be swapped unnoticed
    prior = tiny_prior(arch, sizes=sizes, grid=grid, num_classes=num_classes)
    labels = torch.tensor([0, 1, 2, 1, 0]) if num_classes else None
    codes = sample(prior, n=5, labels=labels, cfg_scale=1.5, top_k=3)
    assert codes.shape == (5, *grid, len(sizes)) and codes.dtype == torch.long
    assert (codes >= 0).all() and (codes < torch.tensor(sizes)).all()
    loss = prior.loss(codes, labels)
    assert loss.ndim == 0 and torch.isfinite(loss)


# --- saving and training ----------------------------------------------------------------------------------------

def test_registry_builds_every_arch_from_the_config():
    assert set(PRIORS) == set(typing.get_args(PriorConfig.model_fields["arch"].annotation))


@pytest.mark.parametrize("arch", ["pixelcnn", "maskgit"])
def test_save_and_load_roundtrip(arch, tmp_path):
    prior = tiny_prior(arch, sizes=(8, 5), num_classes=3)
    codes, labels = random_codes(4, (8, 5)), torch.tensor([0, 1, 2, 0])
    save_prior(prior, tmp_path / "prior", {"tokenizer_sha256": "x"})
    loaded, provenance = load_prior(tmp_path / "prior")
    assert provenance["tokenizer_sha256"] == "x" and loaded.config == prior.config
    torch.testing.assert_close(loaded.loss(codes, labels), prior.loss(codes, labels))
    assert torch.equal(sample(loaded, labels=labels), sample(prior, labels=labels))


@pytest.mark.parametrize("arch", ARCHS)
def test_training_lowers_the_loss_and_samples_follow(arch):
    """Codes ``(4 * label + i + 2j + 3c) mod 8``: the class and the position fix every code. A few dozen steps
    lower the loss, and the sampler then draws mostly those codes (chance would be 1 in 8)."""
    sizes, grid = (8, 8), (4, 4)
    prior = tiny_prior(arch, sizes=sizes, grid=grid, num_classes=2)
    i, j, c = torch.meshgrid(torch.arange(4), torch.arange(4), torch.arange(2), indexing="ij")
    pattern = lambda labels: (4 * labels[:, None, None, None] + i + 2 * j + 3 * c) % 8  # noqa: E731
    labels = torch.randint(0, 2, (64,), generator=torch.Generator().manual_seed(0))
    codes = pattern(labels)
    before = prior.loss(codes, labels).item()
    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-3)
    prior.train()
    for step in range(80):
        batch = torch.arange(16) + 16 * (step % 4)
        loss = prior.loss(codes[batch], labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    prior.eval()
    after = prior.loss(codes, labels).item()
    assert after < 0.5 * before, (before, after)
    wanted = torch.tensor([0, 1] * 4)
    drawn = sample(prior, n=8, labels=wanted, temperature=0.5)
    assert (drawn == pattern(wanted)).float().mean() > 0.6


@pytest.mark.parametrize("arch", ARCHS)
def test_prior_config_files_validate(arch):
    # The prior and sample sections only: pipeline.config would import Lightning, which costs this file seconds.
    # (`vqgen ... -c configs/prior/ARCH.yaml` validates the whole file, train section included.)
    data = yaml.safe_load((REPO / f"configs/prior/{arch}.yaml").read_text())
    prior = PriorConfig(**{key: value for key, value in data["prior"].items() if key != "train"})
    assert prior.arch == arch and isinstance(data["prior"]["train"], dict)
    SampleControls(**data.get("sample", {}))
