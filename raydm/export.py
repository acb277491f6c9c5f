"""``raydm export``: the selected model as one ``torch.export`` program that plain torch
loads, without raydm.

The program holds the backbone and the classifier with the preprocessing they were trained
with (centre crop, scaling to [0, 1], normalisation) folded in, for any batch size, and a
``raydm.json`` extra file with the class names and the input it takes::

    extra = {"raydm.json": ""}
    model = torch.export.load("model.pt2", extra_files=extra).module()
    probabilities = model(images)  # uint8 N x C x size x size, as json.loads(extra[...]) says
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from raydm.predict import Model

METADATA_FILE = "raydm.json"


class Exported(nn.Module):
    """uint8 images (N x C x size x size), or float points (N x D), -> class probabilities
    (N x classes): ``Model.probabilities``, the preprocessing of evaluation included."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.method = model.method  # a submodule: its weights are the program's parameters
        self.model = model
        self.images = len(model.input_shape) == 3

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model.probabilities(inputs)


def metadata(model: Model, selected: str) -> dict:
    data = model.config.data
    if len(model.input_shape) == 3:
        taken = {
            "dtype": "uint8",
            "shape": ["N", data.image_channels, data.image_size, data.image_size],
            "channels": "grey (PIL mode L)" if data.image_channels == 1 else "RGB",
            "resize": "bilinear (PIL), to the size above",
        }
    else:
        taken = {"dtype": "float32", "shape": ["N", *model.input_shape]}
    return {
        "class_names": list(model.class_names),
        "input": taken,
        "output": "class probabilities, N x len(class_names)",
        "selected": selected,
        "method": model.config.method,
        "backbone": model.config.model.backbone,
    }


def export(model: Model, selected: str, out: Path) -> dict:
    """Export ``model`` on the CPU into ``out``; the metadata it records there."""
    # Plain (not channels-last) weights: the saved program's weights load as saved.
    method = model.method.to("cpu").to(memory_format=torch.contiguous_format).eval()
    on_cpu = Model(method, model.transform, model.config, model.class_names, model.input_shape)
    wrapped = Exported(on_cpu).eval()
    dtype = torch.uint8 if wrapped.images else torch.float32
    example = torch.zeros((2, *model.input_shape), dtype=dtype)
    program = torch.export.export(
        wrapped, (example,), dynamic_shapes={"inputs": {0: torch.export.Dim("batch")}}
    )
    info = metadata(model, selected)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, out, extra_files={METADATA_FILE: json.dumps(info, indent=1)})
    return info
