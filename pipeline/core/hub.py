"""vqgen models on the Hugging Face Hub: ``save_pretrained``, ``from_pretrained`` (a directory or a repo id) and
``push_to_hub`` from huggingface_hub's ``PyTorchModelHubMixin``, over the model directories of :mod:`.files`
(config.json with the kind, the provenance and the weights' sha256; model.safetensors) plus a model card, README.md
(:mod:`.model_card`).

Two of the mixin's steps are replaced. Its saving deletes config.json before writing it again and keeps any README.md
already there (a stale card after retraining); here every file is written atomically and replaced. Its loading
builds the model from config.json unchecked; here the kind and the weights' sha256 are checked first, as for any run
directory, and directories written before the Hub support (no README.md) load the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

import torch
from huggingface_hub import ModelCard, PyTorchModelHubMixin, snapshot_download
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from pydantic import ValidationError

from .errors import VqgenError
from .files import CONFIG_FILE, WEIGHTS_FILE, load_model_dir, save_model_dir, write_text
from .model_card import CARD_FILE, CARD_TEMPLATE, card_template_fields

T = TypeVar("T", bound="HubModel")


class HubModel(PyTorchModelHubMixin, library_name="vqgen", license="mit", model_card_template=CARD_TEMPLATE):
    """Each model says what its config.json holds (:meth:`hub_config`), how it is rebuilt from it
    (:meth:`from_hub_config`) and what its card says (:meth:`card_fields`); this class does the files and the Hub."""

    kind: ClassVar[str]  # "tokenizer" or "prior": recorded in config.json and checked on loading
    provenance: dict[str, Any]  # how the model was trained (data, steps, fingerprint, ...); saved with it

    def hub_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def hub_state_dict(self) -> dict[str, torch.Tensor]:
        return self.state_dict()

    @classmethod
    def from_hub_config(cls: type[T], config: dict[str, Any], state: dict[str, torch.Tensor], directory: Path) -> T:
        raise NotImplementedError

    def card_fields(self) -> dict[str, Any]:
        """title, summary, usage (with ``PLACEHOLDER``), config (a dict), data, metrics, provenance (markdown)."""
        raise NotImplementedError

    # --- saving ------------------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | Path, *, config: dict | None = None, repo_id: str | None = None,
                        push_to_hub: bool = False, model_card_kwargs: dict[str, Any] | None = None,
                        **push_to_hub_kwargs) -> str | None:
        if config is not None:
            raise TypeError("a vqgen model writes its own config.json (architecture and provenance); "
                            "set .provenance instead of passing config")
        self.write_pretrained(save_directory, model_card_kwargs)
        if push_to_hub:
            return self.push_to_hub(repo_id or Path(save_directory).name, model_card_kwargs=model_card_kwargs,
                                    **push_to_hub_kwargs)
        return None

    def _save_pretrained(self, save_directory: Path) -> None:
        self.write_pretrained(save_directory)

    def write_pretrained(self, directory: str | Path, model_card_kwargs: dict[str, Any] | None = None) -> str:
        """config.json, model.safetensors and README.md, each written atomically; returns the weights' sha256."""
        digest = save_model_dir(directory, {"kind": self.kind, **self.hub_config()}, self.hub_state_dict())
        card = self.generate_model_card(weights_sha256=digest, **(model_card_kwargs or {}))
        write_text(Path(directory) / CARD_FILE, str(card))
        return digest

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        # The card's usage snippet names the repo it is pushed to.
        kwargs["model_card_kwargs"] = {"repo_id": repo_id, **(kwargs.get("model_card_kwargs") or {})}
        return super().push_to_hub(repo_id, **kwargs)

    def generate_model_card(self, *args, repo_id: str | None = None, weights_sha256: str | None = None,
                            **kwargs) -> ModelCard:
        fields = card_template_fields(self.card_fields(), repo_id, weights_sha256)
        return super().generate_model_card(*args, **{**fields, **kwargs})

    # --- loading -----------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls: type[T], pretrained_model_name_or_path: str | Path, *, force_download: bool = False,
                        token: str | bool | None = None, cache_dir: str | Path | None = None,
                        local_files_only: bool = False, revision: str | None = None, **model_kwargs) -> T:
        # The mixin's version would first read config.json unchecked; everything happens in _from_pretrained here.
        return cls._from_pretrained(model_id=str(pretrained_model_name_or_path), revision=revision,
                                    cache_dir=cache_dir, force_download=force_download,
                                    local_files_only=local_files_only, token=token, **model_kwargs)

    @classmethod
    def _from_pretrained(cls: type[T], *, model_id: str, revision: str | None, cache_dir: str | Path | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         map_location: str | torch.device = "cpu") -> T:
        directory = resolve_model_dir(model_id, cls.kind, revision=revision, cache_dir=cache_dir,
                                      force_download=force_download, local_files_only=local_files_only, token=token)
        return cls.from_directory(directory, map_location)

    @classmethod
    def from_directory(cls: type[T], directory: str | Path, map_location: str | torch.device = "cpu") -> T:
        """A local directory only (what the pipeline's steps pass), in eval mode."""
        config, state = load_model_dir(directory, kind=cls.kind)
        return cls.from_hub_config(config, state, Path(directory)).to(map_location).eval()


def resolve_model_dir(name_or_path: str | Path, kind: str, **hub_options) -> Path:
    """A local directory as it is; otherwise a Hub repo id, its files fetched into the Hub cache."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    wanted = f"a {kind} directory (with {CONFIG_FILE} and {WEIGHTS_FILE}) or a Hugging Face repo id (user/name)"
    if path.exists():
        raise VqgenError(f"{path} is a file; pass {wanted}")
    try:
        validate_repo_id(str(name_or_path))
    except HFValidationError:
        raise VqgenError(f"{name_or_path} does not exist; pass {wanted}") from None
    try:
        return Path(snapshot_download(str(name_or_path), allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, CARD_FILE],
                                      library_name="vqgen", **hub_options))
    except Exception as err:  # offline, unknown repo, no access, ...: to the user they all mean the same
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise VqgenError(f"{name_or_path} is not a local directory, and fetching it from the Hugging Face Hub failed "
                         f"({reason}); pass {wanted}, check the network, or log in (hf auth login)") from None


def rebuilt(directory: Path, kind: str, build: Callable[[], T]) -> T:
    """``build()``, with a config.json this version cannot build (an option renamed or removed since, an edit by hand)
    reported as what to do."""
    try:
        return build()
    except (ValueError, TypeError, KeyError) as err:  # pydantic's ValidationError is a ValueError
        if isinstance(err, ValidationError):
            first = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        else:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise VqgenError(f"the {CONFIG_FILE} in {directory} does not describe a {kind} this vqgen version can build "
                         f"({first}); it was written by another version or edited by hand: load it with the vqgen "
                         f"version that wrote it, or retrain it") from None
