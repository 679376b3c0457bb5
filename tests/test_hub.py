"""Hub-compatible models: save_pretrained/from_pretrained round trips for the tokenizers and every prior, run
directories written before the Hub support, the errors that say what to do, the model card, and push_to_hub (with the
Hub replaced by a stand-in: nothing here reaches the network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from pipeline.core.errors import VqgenError
from pipeline.core.fid_protocol import PROTOCOL, feature_path_label
from pipeline.core.files import sha256_file
from stage1_tokenizer import Tokenizer, TokenizerConfig
from stage1_tokenizer.vqvae import VQVAE
from stage1_tokenizer.vqvae2 import VQVAE2
from stage2_prior import HierarchicalPrior, Prior, load_prior, save_prior
from stage2_prior.config import GPTConfig, MaskGITConfig, PixelCNNConfig, PriorConfig
from stage2_prior.gpt import GPTPrior
from stage2_prior.registry import build_prior

PIPELINE_PROVENANCE = {"fingerprint": "0123456789abcdef", "data": {"name": "digits", "image_size": 16},
                       "epochs": 3, "steps": 120}
PRIOR_PROVENANCE = {"tokenizer_sha256": "ab" * 32, "test_bits_per_code": 1.5,
                    "codes": {"dir": "runs/x/codes", "level": "codes", "grid": [4, 4], "codebook_sizes": [8]},
                    "provenance": {"fingerprint": "fedcba9876543210", "epochs": 2, "steps": 40}}


def tiny_tokenizer(arch: str = "vqvae") -> Tokenizer:
    torch.manual_seed(0)
    return Tokenizer(TokenizerConfig(arch=arch, hidden_channels=16, res_channels=8, n_res_blocks=1, embed_dim=8,
                                     image_size=16, quantizer={"name": "vq", "codebook_size": 16})).eval()


def tiny_prior(arch: str, num_classes: int = 3):
    torch.manual_seed(0)
    gpt = GPTConfig(n_layer=1, n_head=2, n_embd=16, dropout=0.0)
    if arch == "stacked":
        return HierarchicalPrior({
            "top": PriorConfig(grid=[2, 2], codebook_sizes=[5], num_classes=num_classes, gpt=gpt),
            "bottom": PriorConfig(grid=[4, 4], codebook_sizes=[7], num_classes=num_classes, gpt=gpt,
                                  context_level="top", context_grid=[2, 2], context_codebook_sizes=[5]),
        }).eval()
    return build_prior(PriorConfig(arch=arch, grid=[4, 4], codebook_sizes=[8, 5], num_classes=num_classes, gpt=gpt,
                                   pixelcnn=PixelCNNConfig(n_layers=2, channels=8),
                                   maskgit=MaskGITConfig(n_layer=1, n_head=2, n_embd=16, dropout=0.0))).eval()


def draw(prior, labels):
    return prior.sample(labels.shape[0], labels, generator=torch.Generator().manual_seed(0))


# --- round trips ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["vqvae", "vqvae2"])
def test_tokenizer_round_trip_gives_identical_outputs(arch, tmp_path):
    tokenizer = tiny_tokenizer(arch)
    tokenizer.provenance = dict(PIPELINE_PROVENANCE)
    tokenizer.save_pretrained(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert config["kind"] == "tokenizer" and config["arch"] == arch and config["provenance"] == PIPELINE_PROVENANCE
    assert config["weights_sha256"] == sha256_file(tmp_path / "tok" / "model.safetensors")

    loaded = Tokenizer.from_pretrained(tmp_path / "tok")
    assert type(loaded.network) is type(tokenizer.network) and loaded.provenance == PIPELINE_PROVENANCE
    images = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    codes = tokenizer.encode(images)
    assert all(torch.equal(loaded.encode(images)[k], codes[k]) for k in codes)
    assert torch.equal(loaded.decode(codes), tokenizer.decode(codes))
    # The network classes load their own directories too, and the pipeline's entry point gives the network.
    network_cls = {"vqvae": VQVAE, "vqvae2": VQVAE2}[arch]
    assert type(network_cls.from_pretrained(tmp_path / "tok")) is network_cls
    assert type(Tokenizer.load(tmp_path / "tok")) is network_cls


@pytest.mark.parametrize("arch", ["gpt", "pixelcnn", "maskgit", "stacked"])
def test_prior_round_trip_gives_identical_outputs(arch, tmp_path):
    prior = tiny_prior(arch)
    prior.provenance = dict(PRIOR_PROVENANCE)
    prior.save_pretrained(tmp_path / "prior")
    loaded = Prior.from_pretrained(tmp_path / "prior")
    assert type(loaded) is type(prior) and loaded.provenance == PRIOR_PROVENANCE
    assert not loaded.training
    labels = torch.tensor([0, 1, 2, 0])
    expected, codes = draw(prior, labels), draw(loaded, labels)
    if arch == "stacked":
        assert all(torch.equal(expected[k], codes[k]) for k in expected)
    else:
        assert torch.equal(expected, codes)
    torch.testing.assert_close(loaded.loss(codes, labels), prior.loss(codes, labels))
    assert type(type(prior).from_pretrained(tmp_path / "prior")) is type(prior)  # its own class loads it too


# --- directories written before the Hub support ---------------------------------------------------------------

def write_todays_layout(directory: Path, config: dict, state: dict) -> None:
    """A run directory as vqgen wrote it before save_pretrained: config.json + model.safetensors, no card."""
    directory.mkdir(parents=True)
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, str(directory / "model.safetensors"))
    sha = sha256_file(directory / "model.safetensors")
    (directory / "config.json").write_text(json.dumps({**config, "weights_sha256": sha}, indent=2))


def test_a_run_directory_from_before_the_hub_support_loads(tmp_path):
    tokenizer, prior = tiny_tokenizer(), tiny_prior("gpt")
    network = tokenizer.network
    write_todays_layout(tmp_path / "tokenizer", {"kind": "tokenizer", **network.config.model_dump(),
                                                 "provenance": PIPELINE_PROVENANCE}, network.state_dict())
    write_todays_layout(tmp_path / "prior-gpt", {"kind": "prior", "prior": prior.config.model_dump(),
                                                 **PRIOR_PROVENANCE}, prior.state_dict())
    images = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8)
    old_dir = tmp_path / "tokenizer"
    for loaded in (Tokenizer.from_pretrained(old_dir), Tokenizer(Tokenizer.load(old_dir))):
        assert torch.equal(loaded.encode(images)["codes"], tokenizer.encode(images)["codes"])
        assert loaded.provenance == PIPELINE_PROVENANCE
    loaded_prior, provenance = load_prior(tmp_path / "prior-gpt")
    assert provenance == PRIOR_PROVENANCE
    for loaded in (loaded_prior, Prior.from_pretrained(tmp_path / "prior-gpt")):
        assert isinstance(loaded, GPTPrior) and loaded.provenance == PRIOR_PROVENANCE
        assert torch.equal(draw(loaded, torch.tensor([0, 1])), draw(prior, torch.tensor([0, 1])))
    # Saving it again adds the card and keeps the provenance and the weights.
    Tokenizer.from_pretrained(tmp_path / "tokenizer").save_pretrained(tmp_path / "again")
    assert (tmp_path / "again" / "README.md").exists()
    assert json.loads((tmp_path / "again" / "config.json").read_text())["provenance"] == PIPELINE_PROVENANCE
    assert sha256_file(tmp_path / "again" / "model.safetensors") == sha256_file(tmp_path / "tokenizer" /
                                                                               "model.safetensors")


def test_directories_that_cannot_load_say_what_to_do(tmp_path):
    network = tiny_tokenizer().network
    written = {"kind": "tokenizer", **network.config.model_dump(), "provenance": {}}
    write_todays_layout(tmp_path / "renamed", {**written, "codebook_dim": 8}, network.state_dict())
    with pytest.raises(VqgenError, match="does not describe a tokenizer this vqgen version can build.*codebook_dim"):
        Tokenizer.from_pretrained(tmp_path / "renamed")
    write_todays_layout(tmp_path / "future", {**written, "arch": "vqvae3"}, network.state_dict())
    with pytest.raises(VqgenError, match="arch 'vqvae3', which this vqgen version does not know"):
        Tokenizer.from_pretrained(tmp_path / "future")

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"not a model directory")
    with pytest.raises(VqgenError, match="is not a tokenizer directory"):
        Tokenizer.from_pretrained(tmp_path / "checkpoints")

    save_prior(tiny_prior("pixelcnn"), tmp_path / "prior", PRIOR_PROVENANCE)
    with pytest.raises(VqgenError, match="holds a 'prior', not a tokenizer"):
        Tokenizer.from_pretrained(tmp_path / "prior")
    with pytest.raises(VqgenError, match="holds a pixelcnn prior, not a gpt; load it with Prior.from_pretrained"):
        GPTPrior.from_pretrained(tmp_path / "prior")
    tiny_tokenizer().save_pretrained(tmp_path / "plain")
    with pytest.raises(VqgenError, match="holds a vqvae tokenizer, not a vqvae2"):
        VQVAE2.from_pretrained(tmp_path / "plain")

    (tmp_path / "prior" / "model.safetensors").write_bytes((tmp_path / "plain" / "model.safetensors").read_bytes())
    with pytest.raises(VqgenError, match="does not match the sha256 in its config.json"):
        Prior.from_pretrained(tmp_path / "prior")


def test_a_name_that_is_neither_a_directory_nor_reachable_is_explained(tmp_path):
    with pytest.raises(VqgenError, match="does not exist; pass a tokenizer directory"):
        Tokenizer.from_pretrained(tmp_path / "no" / "such" / "run")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(VqgenError, match="is a file"):
        Prior.from_pretrained(tmp_path / "file.txt")
    with pytest.raises(VqgenError, match="fetching it from the Hugging Face Hub failed"):
        Tokenizer.from_pretrained("someone/not-cached-here", local_files_only=True, cache_dir=tmp_path / "hub")
    # The pipeline's entry points read local directories only: a missing run directory is never looked up online.
    with pytest.raises(VqgenError, match="is not a tokenizer directory .* train one first"):
        Tokenizer.load("someone/not-here")
    with pytest.raises(VqgenError, match="is not a prior directory"):
        load_prior("someone/not-here")


# --- the card, the files, push_to_hub ---------------------------------------------------------------------------

def test_model_cards_state_config_data_metrics_and_the_fid_protocol(tmp_path):
    tokenizer = tiny_tokenizer()
    digest = tokenizer.network.save(tmp_path / "tok", PIPELINE_PROVENANCE)  # the pipeline's call
    card = (tmp_path / "tok" / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: vqgen" in card and "- image-tokenizer" in card
    assert '"codebook_size": 16' in card and '"arch": "vqvae"' in card  # the config
    assert "- name: digits" in card and "- steps: 120" in card and "- fingerprint: 0123456789abcdef" in card
    assert "`vqgen tokenizer eval` measures" in card  # no metrics recorded: where to get them
    assert PROTOCOL in card and feature_path_label("exact") in card and feature_path_label("fast") in card
    assert f"weights sha256: `{digest}`" in card
    assert 'Tokenizer.from_pretrained("path/to/this/directory")' in card

    save_prior(tiny_prior("gpt"), tmp_path / "prior", PRIOR_PROVENANCE)
    card = (tmp_path / "prior" / "README.md").read_text()
    assert "- test NLL (bits per code): 1.5" in card and f"- tokenizer weights sha256: {'ab' * 32}" in card
    assert "class-conditional (3 classes)" in card and "labels=torch.arange(16) % 3" in card
    assert '"n_embd": 16' in card and '"pixelcnn"' not in card  # only the architecture it is
    assert PROTOCOL in card and "- steps: 40" in card and "- discrete-prior" in card


def test_saving_again_replaces_every_file_and_leaves_no_temporaries(tmp_path):
    tokenizer = tiny_tokenizer()
    tokenizer.save_pretrained(tmp_path / "tok")
    tokenizer.provenance = {"metrics": {"rfid": 12.5}}
    with torch.no_grad():
        next(tokenizer.parameters()).add_(1.0)
    tokenizer.save_pretrained(tmp_path / "tok")  # the mixin's own version would keep the first card
    assert "- rfid: 12.5" in (tmp_path / "tok" / "README.md").read_text()
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert torch.equal(next(Tokenizer.from_pretrained(tmp_path / "tok").parameters()), next(tokenizer.parameters()))
    with pytest.raises(TypeError, match="writes its own config.json"):
        tokenizer.save_pretrained(tmp_path / "other", config={"a": 1})


def test_push_to_hub_uploads_the_saved_files_with_the_repo_in_the_card(tmp_path, monkeypatch):
    import huggingface_hub.hub_mixin as hub_mixin

    uploaded = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=None, exist_ok=False):
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, **kwargs):
            uploaded.update({p.name: p.read_bytes() for p in Path(folder_path).iterdir()})
            return f"https://huggingface.co/{repo_id}/commit/0"

    monkeypatch.setattr(hub_mixin, "HfApi", FakeApi)
    prior = tiny_prior("maskgit")
    save_prior(prior, tmp_path / "prior", PRIOR_PROVENANCE)
    loaded = Prior.from_pretrained(tmp_path / "prior")
    assert loaded.push_to_hub("someone/digits-maskgit").endswith("/commit/0")
    assert sorted(uploaded) == ["README.md", "config.json", "model.safetensors"]
    assert 'Prior.from_pretrained("someone/digits-maskgit")' in uploaded["README.md"].decode()
    assert uploaded["model.safetensors"] == (tmp_path / "prior" / "model.safetensors").read_bytes()
    assert json.loads(uploaded["config.json"])["tokenizer_sha256"] == "ab" * 32


def test_a_gpt_saved_before_the_activation_option_keeps_its_tanh_gelu(tmp_path):
    prior = tiny_prior("gpt")
    old_config = prior.config.model_dump()
    del old_config["gpt"]["activation"]
    write_todays_layout(tmp_path / "old", {"kind": "prior", "prior": old_config, **PRIOR_PROVENANCE},
                        prior.state_dict())
    old, _ = load_prior(tmp_path / "old")
    assert old.config.gpt.activation == "gelu_new" and old.model.config.activation_function == "gelu_new"
    prior.save_pretrained(tmp_path / "new")
    new, _ = load_prior(tmp_path / "new")
    assert new.config.gpt.activation == "gelu" and new.model.config.activation_function == "gelu"
    x = torch.linspace(-3, 3, 13)  # the networks really run different GELUs
    old_gelu, new_gelu = old.model.transformer.h[0].mlp.act(x), new.model.transformer.h[0].mlp.act(x)
    assert torch.allclose(new_gelu, torch.nn.functional.gelu(x)) and not torch.allclose(old_gelu, new_gelu)
