"""The model card (README.md) of a saved vqgen model: a template whose sections every model fills (config, training
data, metrics, provenance), with how vqgen measures FID stated in the reports' own words."""

from __future__ import annotations

import json
from typing import Any

from .fid_protocol import PROTOCOL, feature_path_label
from .files import CONFIG_FILE

CARD_FILE = "README.md"
PLACEHOLDER = "REPO_OR_DIR"  # in a card's usage snippet: the repo id when pushed, else a directory

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

{{ summary }}

## Use it

```python
{{ usage }}
```

## Config

```json
{{ config }}
```

## Training data

{{ data }}

## Metrics

{{ metrics }}

## How vqgen measures FID

{{ fid_protocol }}

## Provenance

{{ provenance }}
"""


def card_template_fields(fields: dict[str, Any], repo_id: str | None, weights_sha256: str | None) -> dict[str, Any]:
    """A model's ``card_fields`` made ready for the template: the usage snippet names the repo (or a directory),
    the config as JSON, the weights' sha256 first under Provenance, and the FID protocol."""
    fields = dict(fields)
    fields["usage"] = fields["usage"].replace(PLACEHOLDER, repo_id or "path/to/this/directory")
    fields["config"] = json.dumps(fields["config"], indent=2)
    if weights_sha256:
        fields["provenance"] = (f"- weights sha256: `{weights_sha256}` (recorded in {CONFIG_FILE}; loading refuses "
                                f"weights that do not match it)\n{fields['provenance']}")
    fields["fid_protocol"] = fid_protocol_text()
    return fields


def fid_protocol_text() -> str:
    return (f"{PROTOCOL}\n\nTwo feature paths, named in every report:\n- {feature_path_label('exact')}\n"
            f"- {feature_path_label('fast')}")


def bullets(items: dict[str, Any]) -> str:
    """A markdown list of ``key: value`` lines (nested values as compact JSON)."""
    lines = [f"- {key}: {json.dumps(value) if isinstance(value, (dict, list)) else value}"
             for key, value in items.items() if value is not None]
    return "\n".join(lines) or "- (none recorded)"
