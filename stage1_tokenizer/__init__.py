"""Stage 1: VQ-VAE-family image tokenizers.

``from stage1_tokenizer import Tokenizer``; ``Tokenizer.from_pretrained(dir or repo id)``, ``encode(images)`` (uint8
or floats in [0, 1]), ``decode(codes)`` (floats in [0, 1]), ``save_pretrained``/``push_to_hub``. Names are imported
on first use: the CLI imports ``stage1_tokenizer.config`` to check a config before anything heavier."""


def __getattr__(name: str):
    if name in ("Tokenizer", "build_tokenizer"):
        from . import tokenizer

        return getattr(tokenizer, name)
    if name == "TokenizerConfig":
        from .config import TokenizerConfig

        return TokenizerConfig
    raise AttributeError(f"module 'stage1_tokenizer' has no attribute {name!r}")


__all__ = ["Tokenizer", "TokenizerConfig", "build_tokenizer"]
