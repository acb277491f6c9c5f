"""docs/search-space.md, written from the config schema itself.

``python -m raydm.schema_doc > docs/search-space.md`` regenerates it; a test fails when the file
and the schema disagree, so the reference cannot drift from what validation accepts.
"""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from raydm.backbones import BACKBONES
from raydm.config import UNSEARCHABLE, ExperimentConfig
from raydm.methods import METHODS

INTRO = """\
# The search-space file

One YAML file describes an experiment: what to train (`method`, `data`, `model`, `train`), how
to search (`search`, `resources`) and what to vary (`params`). Every key is optional; unknown
keys are errors. This page is generated from the schema (`python -m raydm.schema_doc`), and a
test fails when the two disagree. `raydm tune --space FILE --dry-run` shows a file resolved.

## Distributions (`params`)

`params` maps a dotted key of any section below to a constant or to a distribution:

```yaml
params:
  train.lr: {loguniform: [1.0e-4, 1.0e-1]}        # log-uniform between the bounds
  method_args.w_dis: {uniform: [0.5, 1.5]}        # uniform between the bounds
  method_args.num_k: {int: [1, 8]}                # an integer, both ends included
  train.batch_size: {choice: [32, 64, 128]}       # one of the listed values
  method_args.gd_params: {choice: [all, last]}    # choices need not be numbers
  train.momentum: 0.9                             # a constant: the same as setting it
```

Each bound (and a value between them) is checked against the field it targets, so a searched
value the field would refuse is an error before anything starts. Sections {unsearchable} are fixed
for a whole search, and so are `model.backbone` and its weight options (they fix the input
pipeline). `train.epochs` cannot be searched under ASHA.

Method options are conditional on `method`, backbone options on `model.backbone`: with
`method: cgdm`, `params` may search `method_args.w_gd`; with `method: dann`, the same key is an
error naming DANN's options. One search uses one method; compare methods with one search each.
"""


def render() -> str:
    fixed = ", ".join(f"`{section}.*`" for section in sorted(UNSEARCHABLE - {"params"}))
    parts = [INTRO.replace("{unsearchable}", fixed)]
    parts.append("## Sections\n")
    parts.append(_table(ExperimentConfig, "", skip={"params", "method_args"}))
    parts.append("## `method_args`, by method\n")
    for name in METHODS.names():
        parts.append(f"### `method: {name}`\n")
        parts.append(_table(METHODS.get(name).Args, "method_args."))
    parts.append("## `model.backbone_args`, by backbone\n")
    for name in BACKBONES.names():
        parts.append(f"### `model.backbone: {name}`\n")
        parts.append(_table(BACKBONES.get(name).Args, "model.backbone_args."))
    return "\n".join(parts).rstrip() + "\n"


def _table(model: type[BaseModel], prefix: str, skip: set[str] = frozenset()) -> str:
    rows = _rows(model, prefix, skip)
    if not rows:
        return "No options.\n"
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [
        f"| `{key}` | {kind} | {default} | {meaning} |" for key, kind, default, meaning in rows
    ]
    return "\n".join(lines) + "\n"


def _rows(model: type[BaseModel], prefix: str, skip) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation is not BaseModel:  # a section; BaseModel itself: per-entry options
                rows += _rows(annotation, f"{key}.", set())
                continue
        default = field.get_default(call_default_factory=True)
        if annotation is BaseModel:
            default_text = "the chosen entry's defaults"
        else:
            default_text = f"`{default!r}`" if default is not None else "none"
        description = (field.description or "").replace("|", "\\|")
        rows.append((key, _type_name(annotation), default_text, description))
    return rows


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{value}`" for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in get_args(annotation))
    if origin is list:
        (item,) = get_args(annotation) or (Any,)
        return f"list of {_type_name(item)}"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


if __name__ == "__main__":
    print(render(), end="")
