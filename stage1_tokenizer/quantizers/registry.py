"""Config names -> quantizer classes and their config models, joined into one union discriminated by ``name``.

The built-in config models (:mod:`.configs`) are known at import, without torch, so a config is checked before
any quantizer class loads; the classes register themselves when their modules are imported
(:func:`register_quantizer`, which also adds the config model of a quantizer defined elsewhere). One class may
serve several names (``ema`` is ``vq`` with EMA codes). ``parse_quantizer_config`` turns a mapping such as
``{name: vq, codebook_size: 512}`` into the config model its name picks, through that union, and every mistake in
it becomes one ``ValueError`` sentence naming the option (or listing the known names and options).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Callable, Union, get_args

from pydantic import Field, TypeAdapter, ValidationError

from .configs import BUILTIN_CONFIGS
from .options import QuantizerOptions

if TYPE_CHECKING:
    from .base import Quantizer

CONFIGS: dict[str, type[QuantizerOptions]] = {}  # name -> config model
QUANTIZERS: dict[str, tuple[type, type[QuantizerOptions]]] = {}  # name -> (class, config model), once imported


def tag(config_cls: type[QuantizerOptions]) -> str:
    (name,) = get_args(config_cls.model_fields["name"].annotation)  # the Literal tag of the union
    return name


def register_config(config_cls: type[QuantizerOptions]) -> None:
    name = tag(config_cls)
    if CONFIGS.get(name, config_cls) is not config_cls:
        raise ValueError(f"quantizer name {name!r} registered twice")
    CONFIGS[name] = config_cls


for _config_cls in BUILTIN_CONFIGS:
    register_config(_config_cls)


def register_quantizer(config_cls: type[QuantizerOptions]) -> Callable[[type], type]:
    """Class decorator: a tokenizer config whose quantizer ``name`` is ``config_cls``'s builds this class."""
    name = tag(config_cls)

    def wrap(cls: type) -> type:
        if name in QUANTIZERS:
            raise ValueError(f"quantizer name {name!r} registered twice")
        register_config(config_cls)
        QUANTIZERS[name] = (cls, config_cls)
        return cls

    return wrap


def config_union() -> Any:
    """The type of a quantizer config: one of the registered config models, chosen by its ``name``."""
    return Annotated[Union[tuple(CONFIGS.values())], Field(discriminator="name")]


def parse_quantizer_config(value: Any) -> QuantizerOptions:
    """A mapping with a ``name`` (or a config model already) -> the config model of that quantizer."""
    if isinstance(value, QuantizerOptions):
        return value
    if not isinstance(value, Mapping):
        raise ValueError("must be a mapping with a quantizer name (for example {name: vq})")
    if "name" not in value:
        raise ValueError("needs a 'name' (for example vq)")
    name = value["name"]
    _check_name(name)  # before the union: a tag that is not a known string would fail there without the names
    try:
        return _union_adapter(tuple(CONFIGS)).validate_python(dict(value))
    except ValidationError as err:
        raise ValueError(_describe(name, err)) from None


def make_quantizer_config(name: str, options: Mapping[str, Any]) -> QuantizerOptions:
    """The config model of quantizer ``name`` with ``options`` (its options without the name)."""
    return parse_quantizer_config({**options, "name": name})


def build_quantizer(name: str, embed_dim: int, options: Mapping[str, Any]) -> Quantizer:
    """Build the quantizer registered as ``name`` for ``embed_dim``-channel features, with ``options``."""
    return quantizer_from_config(make_quantizer_config(name, options), embed_dim)


def quantizer_from_config(config: QuantizerOptions, embed_dim: int) -> Quantizer:
    """Build the quantizer class registered for ``config.name`` (``ema`` and ``vq`` share one) from ``config``."""
    register_all()
    quantizer_cls, _ = QUANTIZERS[config.name]
    return quantizer_cls(embed_dim, config)


def register_all() -> dict[str, tuple[type, type[QuantizerOptions]]]:
    """Import every built-in quantizer module (each registers its class); the filled registry."""
    for module in ("vq", "ema", "gumbel", "fsq", "lfq", "rvq", "pq", "sq", "soft"):
        importlib.import_module(f"{__package__}.{module}")
    return QUANTIZERS


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or name not in CONFIGS:
        raise ValueError(f"unknown quantizer {name!r}; known quantizers: {', '.join(sorted(CONFIGS))}")


@functools.cache
def _union_adapter(names: tuple[str, ...]) -> TypeAdapter:
    # Keyed by the registered names, so a quantizer registered later gets a union that includes it.
    return TypeAdapter(config_union())


def _describe(name: str, err: ValidationError) -> str:
    """pydantic's errors as sentences: unknown options listed with the valid ones, then each bad value."""
    problems = err.errors()
    unknown = [str(problem["loc"][-1]) for problem in problems if problem["type"] == "extra_forbidden"]
    sentences = []
    if unknown:
        valid = ", ".join(CONFIGS[name].option_names())
        sentences.append(f"unknown option(s) {', '.join(unknown)} for quantizer {name!r}; its options are: {valid}")
    for problem in problems:
        if problem["type"] == "extra_forbidden":
            continue
        path = problem["loc"][1:]  # loc[0] is the union's tag, that is the name
        what = f" option {path[0]!r}" if path else ""
        what += f" (item {'.'.join(map(str, path[1:]))})" if len(path) > 1 else ""
        if not path:  # a check across options: its message names them and their values
            sentences.append(f"quantizer {name!r}: {problem['msg'].removeprefix('Value error, ')}")
            continue
        sentences.append(f"quantizer {name!r}{what}: {problem['msg']}, got {problem['input']!r}")
    return "; ".join(sentences)
