"""What the commands share: the config options (``-c FILE`` merged in order, then ``--set key=value``; a command's
own options are shortcuts for such overrides), the trainer options, user errors, and writing the resolved config.

``config_command`` gives a command those options, so each command's signature holds only its own."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from ..core.errors import VqgenError
from .errors import user_errors

DebugOpt = typer.Option(False, "--debug", help="Show the full traceback on errors.")
TokenizerOpt = typer.Option(None, "--tokenizer", help="Tokenizer directory.")

# parameter name: (type, option); a command shows them in this order, its own options after the config ones.
CONFIG_OPTIONS = {
    "configs": (List[Path], typer.Option([], "--config", "-c", help="YAML config file(s), merged in order.")),
    "sets": (List[str], typer.Option([], "--set", help="Override a config key: --set prior.gpt.n_layer=8 "
                                                       "(repeatable).")),
    "run_dir": (Optional[Path], typer.Option(None, "--run-dir", help="Run directory (default: run_dir from the "
                                                                     "config).")),
}
DATA_OPTIONS = {  # parameter name: (type, option, config key)
    "data": (Optional[str], typer.Option(None, "--data", help="Dataset: digits, mnist, fashion-mnist, cifar10, "
                                                              "imagefolder."), "data.name"),
    "data_root": (Optional[str], typer.Option(None, "--data-root", help="Dataset folder (else data.root or "
                                                                        "$VQGEN_DATA_DIR)."), "data.root"),
}
TRAINER_OPTIONS = {  # parameter name: (type, option, config key; SECTION is the command's tokenizer or prior)
    "devices": (Optional[str], typer.Option(None, "--devices", help="Lightning devices (1, 2, auto, ...)."),
                "SECTION.train.devices"),
    "num_nodes": (Optional[int], typer.Option(None, "--num-nodes", help="Lightning num_nodes (machines, each with "
                                                                      "--devices processes)."),
                  "SECTION.train.num_nodes"),
    "strategy": (Optional[str], typer.Option(None, "--strategy", help="Lightning strategy (ddp, fsdp, ...)."),
                 "SECTION.train.trainer.strategy"),
    "precision": (Optional[str], typer.Option(None, "--precision",
                                              help="Lightning precision (32-true, bf16-mixed, 16-mixed)."),
                  "SECTION.train.precision"),
    "max_epochs": (Optional[int], typer.Option(None, "--max-epochs", help="Epochs (default: the config's, else 10)."),
                   "SECTION.train.max_epochs"),
    "max_steps": (Optional[int], typer.Option(None, "--max-steps", help="Stop after N optimizer steps (default: off)."),
                  "SECTION.train.max_steps"),
    "accelerator": (Optional[str], typer.Option(None, "--accelerator", help="cpu, gpu, auto."),
                    "SECTION.train.accelerator"),
    "profiler": (Optional[str], typer.Option(None, "--profiler", help="Lightning profiler: simple, advanced, pytorch."),
                 "SECTION.train.profiler"),
    "accumulate": (Optional[int], typer.Option(None, "--accumulate", help="Gradient accumulation batches."),
                   "SECTION.train.accumulate_grad_batches"),
    "checkpoint_every": (Optional[int], typer.Option(None, "--checkpoint-every", help="Also a resumable checkpoint "
                                                     "every N optimizer steps."), "SECTION.train.checkpoint_every_steps"),
    "logger": (Optional[str], typer.Option(None, "--logger", help="Training log besides the CSV one: csv (none), "
                                                                  "tensorboard, wandb (offline)."), "logger.name"),
}


def _overrides(pairs: dict[str, object]) -> list[str]:
    out = []
    for key, value in pairs.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        out.append(f"{key}={value}")
    return out


def load_cli_config(configs: List[Path], sets: List[str], run_dir: Optional[Path], **shortcuts):
    """The config files merged, then ``--set`` overrides, then the command's shortcuts (``key.path=value``)."""
    missing = [str(path) for path in configs if not Path(path).is_file()]
    if missing:  # before the config models import torch: a typo answers at once
        raise VqgenError(f"config file {', '.join(missing)} does not exist")
    from ..config import load_config

    extra = _overrides(shortcuts)
    if run_dir is not None:
        extra.append(f"run_dir={run_dir}")
    cfg = load_config(list(configs), list(sets) + extra)  # checked without torch, so a wrong value answers at once
    from ..core.float_env import flush_denormals

    flush_denormals()  # before torch starts its threads, which inherit it
    return cfg


@dataclass
class ConfigSource:
    """The config a command's options name, loaded only when the command asks (after its cheap checks)."""

    files: List[Path]
    sets: List[str]
    run_dir: Optional[Path]
    shortcuts: dict[str, Any] = field(default_factory=dict)

    def load(self, *first: Path, **shortcuts):
        """``first``: config files merged before the ``-c`` ones; ``shortcuts``: the command's own overrides."""
        return load_cli_config([*first, *self.files], self.sets, self.run_dir, **self.shortcuts, **shortcuts)


def record_config(cfg, out: Path) -> None:
    """Write the resolved config beside a step command's outputs: what they were made with."""
    from ..config import dump_config
    from ..core.files import write_text
    from ..run_paths import RESOLVED_CONFIG

    write_text(Path(out) / RESOLVED_CONFIG, dump_config(cfg))


def _parameters(options: dict[str, tuple]) -> list[inspect.Parameter]:
    return [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=spec[1], annotation=spec[0])
            for name, spec in options.items()]


def config_command(data: bool = False, trainer: Optional[str] = None) -> Callable[[Callable], Callable]:
    """Give a command -c/--set/--run-dir (with ``data``, --data/--data-root; with ``trainer``, the trainer options
    of that config section) and --debug, with user errors as short messages. The command receives them all as
    ``source``, a ``ConfigSource``."""

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(**kwargs):
            kwargs.pop("debug")
            files, sets, run_dir = (kwargs.pop(name) for name in CONFIG_OPTIONS)
            shortcuts = {key: kwargs.pop(name) for name, (_, _, key) in DATA_OPTIONS.items() if data}
            shortcuts |= {key.replace("SECTION", trainer): kwargs.pop(name)
                          for name, (_, _, key) in TRAINER_OPTIONS.items() if trainer}
            return func(source=ConfigSource(files, sets, run_dir, shortcuts), **kwargs)

        own = [p for p in inspect.signature(func, eval_str=True).parameters.values() if p.name != "source"]
        shown = (_parameters(CONFIG_OPTIONS) + (_parameters(DATA_OPTIONS) if data else []) + own
                 + (_parameters(TRAINER_OPTIONS) if trainer else []) + _parameters({"debug": (bool, DebugOpt)}))
        wrapper.__signature__ = inspect.Signature(shown)  # what Typer reads
        return user_errors(wrapper)

    return decorate
