"""Stage 2: priors over code grids (GPT, PixelCNN, MaskGIT, and stacked for VQ-VAE-2 codes).

``from stage2_prior import Prior``; ``Prior.from_pretrained(dir or repo id)`` loads any saved prior,
``prior.sample(n, labels, controls, generator)`` draws code grids, ``save_pretrained``/``push_to_hub`` write them.
Names are imported on first use: the CLI imports ``stage2_prior.config`` to check a config, which must not wait for
transformers."""


def __getattr__(name: str):
    if name in ("Prior", "HierarchicalPrior", "load_prior", "save_prior"):
        from . import persistence

        return getattr(persistence, name)
    if name in ("PriorConfig", "SampleControls"):
        from . import config

        return getattr(config, name)
    raise AttributeError(f"module 'stage2_prior' has no attribute {name!r}")


__all__ = ["HierarchicalPrior", "Prior", "PriorConfig", "SampleControls", "load_prior", "save_prior"]
