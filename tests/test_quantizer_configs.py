"""Quantizer configs are one pydantic union discriminated by ``name``: a wrong value is a one-sentence ValueError that
names the option (lists, strings and bools never pass for numbers, a name must be a known string), dumps hold the
options a config gave (so saved config.json files and run fingerprints are unchanged), and saved configs load."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from stage1_tokenizer.config import TokenizerConfig
from stage1_tokenizer.quantizers import QUANTIZERS, make_quantizer_config
from stage1_tokenizer.quantizers.ema import EMAConfig

REPO = Path(__file__).resolve().parents[1]
KNOWN = "known quantizers: " + ", ".join(sorted(QUANTIZERS))


@pytest.mark.parametrize("name, option, value, expected", [
    ("vq", "codebook_size", [512], "integer"),  # a list where an int belongs
    ("vq", "codebook_size", True, "integer"),  # a bool is no count...
    ("rvq", "depth", False, "integer"),
    ("vq", "beta", True, "number"),  # ...nor a weight
    ("pq", "beta", "0.25", "number"),  # a string is not a number
    ("vq", "kmeans_init", 1, "boolean"),  # and 1 is not a switch
    ("fsq", "levels", 8, "list"),
    ("gumbel", "schedule", ["exp"], "string"),
])
def test_a_wrong_type_is_a_clear_value_error_naming_the_option(name, option, value, expected):
    with pytest.raises(ValueError) as err:
        make_quantizer_config(name, {option: value})
    message = str(err.value)
    assert type(err.value) is ValueError  # one sentence, not pydantic's multi-line report
    assert f"quantizer {name!r} option {option!r}" in message and expected in message and repr(value) in message


def test_a_wrong_list_item_names_the_option_and_the_item():
    with pytest.raises(ValueError, match=r"option 'levels' \(item 1\): Input should be a valid integer, got 'a'"):
        make_quantizer_config("fsq", {"levels": [8, "a"]})


@pytest.mark.parametrize("name", [[], {"a": 1}, 3, None, True, "nope"])
def test_a_name_that_is_not_a_known_string_lists_the_known_names(name):
    with pytest.raises(ValueError, match=re.escape(f"unknown quantizer {name!r}; {KNOWN}")):
        make_quantizer_config(name, {})
    with pytest.raises(ValueError, match=KNOWN):
        TokenizerConfig(quantizer={"name": name})


def test_an_unknown_option_lists_the_valid_ones():
    with pytest.raises(ValueError) as err:
        make_quantizer_config("rvq", {"codebook_sise": 3})
    message = str(err.value)
    assert message.startswith("unknown option(s) codebook_sise for quantizer 'rvq'; its options are: ")
    assert all(option in message for option in QUANTIZERS["rvq"][1].option_names())
    assert "ema" in QUANTIZERS["rvq"][1].option_names()


@pytest.mark.parametrize("value, expected", [({"codebook_size": 3}, "needs a 'name'"), ([], "must be a mapping"),
                                             ("vq", "must be a mapping")])
def test_a_quantizer_that_is_not_a_named_mapping_is_refused(value, expected):
    with pytest.raises(ValueError, match=expected):
        TokenizerConfig(quantizer=value)


def test_dumps_hold_the_given_options_as_the_old_dicts_did():
    """Run fingerprints hash these dumps: a default written out would mark every earlier run stale."""
    assert TokenizerConfig().model_dump()["quantizer"] == {"name": "vq", "codebook_size": 512, "beta": 0.25,
                                                           "kmeans_init": True, "restart": True}
    for path in sorted((REPO / "configs" / "tokenizer").glob("*.yaml")):
        section = {key: value for key, value in yaml.safe_load(path.read_text())["tokenizer"].items() if key not in ("train", "loss")}
        assert TokenizerConfig(**section).model_dump(mode="json")["quantizer"] == section["quantizer"], path.name


def test_a_saved_ema_config_json_loads_as_the_preset():
    saved = json.loads(json.dumps(TokenizerConfig(quantizer={"name": "ema", "decay": 0.9, "eps": 1e-5}).model_dump()))
    assert saved["quantizer"] == {"name": "ema", "decay": 0.9, "eps": 1e-5}
    config = TokenizerConfig(**saved).quantizer
    assert isinstance(config, EMAConfig) and config.ema and config.decay == 0.9


def test_overrides_merge_into_one_quantizer_and_a_new_name_drops_the_old_options():
    from pipeline.config import load_config
    from pipeline.core.errors import VqgenError

    cfg = load_config([REPO / "configs" / "tokenizer" / "rvq.yaml"], ["tokenizer.quantizer.ema=true"])
    assert (cfg.tokenizer.quantizer.depth, cfg.tokenizer.quantizer.ema) == (4, True)  # the file's options stay
    cfg = load_config([REPO / "configs" / "tokenizer" / "rvq.yaml"], ["tokenizer.quantizer={name: fsq}"])
    assert cfg.tokenizer.quantizer.model_dump() == {"name": "fsq"}
    for override, expected in [("tokenizer.quantizer.codebook_size=[1]", "option 'codebook_size'"),
                               ("tokenizer.quantizer.name=[]", KNOWN)]:
        with pytest.raises(VqgenError, match=expected):
            load_config([], [override])


def test_a_saved_ema_tokenizer_loads_with_its_ema_codes(tmp_path):
    import torch

    from stage1_tokenizer.tokenizer import Tokenizer, build_tokenizer

    torch.manual_seed(0)
    quantizer = {"name": "ema", "codebook_size": 16, "decay": 0.99, "eps": 1e-5}  # as configs/tokenizer/ema.yaml
    model = build_tokenizer(TokenizerConfig(hidden_channels=16, res_channels=8, n_res_blocks=1, embed_dim=8,
                                            image_size=16, quantizer=quantizer)).train()
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    model(x)  # one EMA update, so the saved codes are not the init
    model.save(tmp_path / "tok")
    assert json.loads((tmp_path / "tok" / "config.json").read_text())["quantizer"] == quantizer
    loaded = Tokenizer.load(tmp_path / "tok")
    assert loaded.quantizer.codebook.learned_by_ema
    assert torch.equal(loaded.quantizer.codebook.weight, model.quantizer.codebook.weight)
    assert torch.equal(loaded.encode(x)["codes"], model.eval().encode(x)["codes"])
