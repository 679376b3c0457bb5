"""The base of every quantizer's config model: the options a tokenizer config gives under ``quantizer:``.

Each quantizer subclasses :class:`QuantizerOptions` with a ``name: Literal[...]`` field (the tag of the
discriminated union that :mod:`.registry` builds) and its options with their defaults.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_serializer


class QuantizerOptions(BaseModel):
    # strict: a list, a string or a bool never passes for a number (an int still does for a float);
    # forbid: a misspelt option is an error, not a silently ignored key.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_serializer(mode="wrap")
    def _given_options_only(self, handler) -> dict[str, Any]:
        # A dump lists the name and the options the config gave, as the plain dicts of saved configs always did:
        # run fingerprints hash this dump, so a default written out would mark every earlier run stale.
        dump = handler(self)
        given = {key: value for key, value in dump.items() if key != "name" and key in self.model_fields_set}
        return {"name": dump["name"], **given}

    @classmethod
    def option_names(cls) -> list[str]:
        return [name for name in cls.model_fields if name != "name"]
