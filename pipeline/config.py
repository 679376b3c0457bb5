"""Experiment configs: YAML files merged in order, then ``--set a.b=value`` overrides, validated into typed objects.

A wrong key or a wrong type is an error naming the key and the file (or the override) it came from.
Every run writes its resolved config into its run directory (``config.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from stage1_tokenizer.config import TokenizerConfig, TokenizerLossConfig
from stage2_prior.config import PriorConfig, SampleControls

from .data_config import DataConfig
from .core.errors import VqgenError
from .core.optim import TrainConfig, with_trainer_aliases
from .training_logs import LoggerConfig


class TokenizerSection(TokenizerConfig):
    # Warm-up as a share of the run, then a constant rate: a cosine decay to 10% of the peak cost the quickstart
    # tokenizer 6 dB (PSNR 31.5 against 37.8, rFID 76.6 against 37.1 at 552 steps). lr_schedule: cosine is there.
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(lr=1e-3, batch_size=64, warmup_fraction=0.02,
                                                                   channels_last=True))
    loss: TokenizerLossConfig = Field(default_factory=TokenizerLossConfig)  # VQGAN terms; off by default

    def architecture(self) -> TokenizerConfig:
        return TokenizerConfig(**self.model_dump(exclude={"train", "loss"}))


class PriorSection(PriorConfig):
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(lr=1e-3, batch_size=64, warmup_steps=50,
                                                                   lr_schedule="cosine"))

    def architecture(self) -> PriorConfig:
        return PriorConfig(**self.model_dump(exclude={"train"}))


class TokenizeSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    devices: PositiveInt = 1  # processes, one per GPU (or sharing the CPU cores); each writes every N-th shard
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    batch_size: PositiveInt = 256
    shard_items: Optional[PositiveInt] = None  # items per codes-XXXXX-of-YYYYY file; None: about 1 GB each


class SampleSection(SampleControls):
    n: PositiveInt = 64
    label: Optional[Union[int, Literal["all"]]] = "all"  # class-conditional priors: one class, or all evenly
    batch_size: PositiveInt = 256
    seed: int = 0
    devices: PositiveInt = 1  # processes sharing the batches (vqgen sample --devices)
    accelerator: Literal["cpu", "cuda"] = "cpu"  # cuda: process r on cuda:r

    def controls(self) -> SampleControls:
        return SampleControls(**self.model_dump(include=set(SampleControls.model_fields)))


class FidSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inception_weights: Optional[str] = None  # None: $VQGEN_INCEPTION_WEIGHTS, else torch-fidelity's download
    reference_split: Literal["train", "test"] = "test"
    # Instead of reference_split: a split name, a folder of images, a samples directory or a run directory (its only
    # samples-ARCH).
    reference: Optional[str] = None
    max_reference: Optional[PositiveInt] = None  # None: the whole reference split
    n_reconstructions: Optional[PositiveInt] = None  # rFID over this many reference images; None: all
    batch_size: PositiveInt = 64
    cache_dir: Optional[str] = None  # None: $VQGEN_CACHE_DIR, else ~/.cache/vqgen
    # False: features equal to torch-fidelity's (exact). True: int8 Inception through ONNX Runtime, several times
    # faster, FID 2-6% above exact on MNIST (needs `uv sync --group fast-fid`); see pipeline/fid_features.py.
    fast: bool = False
    devices: PositiveInt = 1  # processes taking the features (vqgen fid --devices); the same features however many
    accelerator: Literal["cpu", "cuda"] = "cpu"  # cuda: process r on cuda:r

    @property
    def feature_path(self) -> str:
        return "fast" if self.fast else "exact"


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_dir: str = "runs/default"
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    tokenizer: TokenizerSection = Field(default_factory=TokenizerSection)
    tokenize: TokenizeSection = Field(default_factory=TokenizeSection)
    prior: PriorSection = Field(default_factory=PriorSection)
    sample: SampleSection = Field(default_factory=SampleSection)
    fid: FidSection = Field(default_factory=FidSection)
    logger: LoggerConfig = Field(default_factory=LoggerConfig)  # training logs: csv, tensorboard or wandb


def _trainer_aliases(tree: dict) -> dict:
    """A source's short Trainer keys (tokenizer.train.max_epochs) moved into ``train.trainer`` before it is merged,
    so that a later file or override wins whichever spelling each one used."""
    for name, field in PipelineConfig.model_fields.items():
        section = tree.get(name)
        if isinstance(section, dict) and "train" in section and "train" in getattr(field.annotation, "model_fields",
                                                                                     {}):
            tree[name] = {**section, "train": with_trainer_aliases(section["train"])}
    return tree


def _merge(base: dict, update: dict, source: str, origins: dict[str, str], prefix: str = "") -> dict:
    """Deep-merge ``update`` into ``base``, recording which source set each dotted key."""
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(base.get(key), dict) and not (
                _renamed(base[key], value) and _chosen_by_name(dotted)):
            _merge(base[key], value, source, origins, dotted + ".")
        else:
            base[key] = value
            origins[dotted] = source
            if isinstance(value, dict):
                for sub in _dotted_keys(value, dotted + "."):
                    origins[sub] = source
    return base


def _renamed(old: dict, new: dict) -> bool:
    """A mapping that names a different ``name`` (say quantizer vq -> fsq) replaces the old one: the old
    options belong to the old choice and must not leak into the new one."""
    return "name" in new and new["name"] != old.get("name")


def _chosen_by_name(dotted: str) -> bool:
    """Whether ``dotted`` is a union of config models discriminated by ``name`` (tokenizer.quantizer), whose options
    belong to the model its name picks; sections such as ``data`` (which has a ``name`` too) keep their other
    keys when the name changes."""
    node: Any = PipelineConfig
    field = None
    for part in dotted.split("."):
        fields = getattr(node, "model_fields", None) if isinstance(node, type) else None
        if not fields or part not in fields:
            return False
        field = fields[part]
        node = field.annotation
    return field is not None and field.discriminator == "name"


def _dotted_keys(tree: dict, prefix: str) -> list[str]:
    keys = []
    for key, value in tree.items():
        keys.append(prefix + str(key))
        if isinstance(value, dict):
            keys += _dotted_keys(value, f"{prefix}{key}.")
    return keys


def parse_override(text: str) -> dict:
    """``a.b.c=value`` -> ``{"a": {"b": {"c": value}}}``; the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise VqgenError(f"override {text!r} must look like key.path=value (for example prior.gpt.n_layer=8)")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise VqgenError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    tree: dict = {}
    node = tree
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return tree


def read_yaml(path: Path) -> dict:
    if not path.exists():
        raise VqgenError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise VqgenError(f"{path} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VqgenError(f"{path} must hold a mapping of sections (data:, tokenizer:, prior:, ...), not {type(data).__name__}")
    return data


def load_config(files: list[str | Path] = (), overrides: list[str] = ()) -> PipelineConfig:
    # Start from the defaults so that a partial override (quantizer.codebook_size=16) keeps its siblings.
    merged: dict[str, Any] = PipelineConfig().model_dump(mode="json")
    origins: dict[str, str] = {}
    for file in files:
        _merge(merged, _trainer_aliases(read_yaml(Path(file))), str(file), origins)
    for text in overrides:
        _merge(merged, _trainer_aliases(parse_override(text)), f"--set {text}", origins)
    try:
        return PipelineConfig(**merged)
    except ValidationError as err:
        raise VqgenError(_explain(err, origins)) from None


def _explain(err: ValidationError, origins: dict[str, str]) -> str:
    lines = ["invalid config:"]
    for problem in err.errors():
        key = ".".join(str(part) for part in problem["loc"])
        source = _origin(key, origins)
        where = f" (in {source})" if source else " (a default)"
        if problem["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key{where}; check its spelling against configs/ or the README")
        else:
            given = problem.get("input")
            given_text = f", got {given!r}" if not isinstance(given, dict) else ""
            lines.append(f"  {key}: {problem['msg']}{given_text}{where}")
    return "\n".join(lines)


def _origin(key: str, origins: dict[str, str]) -> Optional[str]:
    parts = key.split(".")
    for end in range(len(parts), 0, -1):  # the nearest enclosing key that a source set
        candidate = ".".join(parts[:end])
        if candidate in origins:
            return origins[candidate]
    # A check of a whole mapping (say tokenizer.quantizer) that sources set key by key: name those sources.
    inner = sorted({source for dotted, source in origins.items() if dotted.startswith(key + ".")})
    return ", ".join(inner) if inner else None


def dump_config(config: PipelineConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
