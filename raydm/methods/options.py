"""Each method's options, in one module that imports no torch: a config validates (and
``raydm list`` answers) without loading the methods. The method files (source_only.py,
dann.py, cgdm.py) say what each option does to the algorithm."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from raydm.options import Section


class MethodArgs(Section):
    """Options of one entry: unknown keys, and booleans given for numbers, are refused."""


class SourceOnlyArgs(MethodArgs):
    pass


class DANNArgs(MethodArgs):
    lambda_max: float = Field(1.0, ge=0, description="Ceiling of the adaptation weight lambda_p.")
    gamma: float = Field(10.0, gt=0, description="Steepness of the lambda_p ramp (paper: 10).")
    lambda_schedule: Literal["ramp", "constant"] = Field(
        "ramp", description="ramp: lambda_p from 0 to lambda_max as in the paper; constant."
    )
    discriminator_hidden: int = Field(100, ge=1, description="Width of the domain classifier.")
    discriminator_layers: int = Field(
        1, ge=0, description="Hidden layers of the domain classifier."
    )
    discriminator_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout in the classifier.")
    discriminator_lr_mult: float = Field(1.0, gt=0, description="lr multiplier of the classifier.")
    domain_passes: Literal["separate", "joint"] = Field(
        "separate",
        description="separate: one backbone pass per domain, so batch norm normalises each "
        "domain by its own statistics; joint: one pass over the mixed batch (18-20 points "
        "lower on MNIST -> MNIST-M with a batch-norm LeNet, BENCHMARKS.md). The same for "
        "backbones without batch norm.",
    )


# CGDM (Su et al., CVPR 2021): defaults follow the official code (lijin118/CGDM) where it
# hard-wires a choice.
class CGDMArgs(MethodArgs):
    w_dis: float = Field(1.0, ge=0, description="Weight of the head discrepancy L_dis (B and C).")
    w_ent: float = Field(0.01, ge=0, description="Weight of the IM loss on target predictions.")
    w_pl: float = Field(0.01, ge=0, description="Weight of the pseudo-label weighted CE (step A).")
    w_gd: float = Field(0.01, ge=0, description="Weight of the gradient discrepancy L_GD (step C).")
    num_k: int = Field(4, ge=1, description="Step-C repetitions per iteration.")
    head_lr_mult: float = Field(1.0, gt=0, description="lr of F1, F2 relative to train.lr.")
    generator_momentum: float = Field(
        0.0, ge=0, lt=1, description="SGD momentum of G (official: none; heads use train.momentum)."
    )
    head_init: Literal["normal", "default"] = Field(
        "normal", description="normal: N(0, 0.01) weights as the official code; default: torch's."
    )
    gd_params: Literal["all", "last"] = Field(
        "all", description="Head parameters in L_GD: all of them, or the last layer only."
    )
    gd_cosine: Literal["rowwise", "flat"] = Field(
        "rowwise",
        description="rowwise: one cosine per output unit of a matrix; flat: one per tensor.",
    )
    pseudo_label_start: int = Field(
        1, ge=0, description="Epochs before the first pseudo-labels (official: after epoch 1)."
    )
    pseudo_label_every: int = Field(1, ge=1, description="Epochs between pseudo-label updates.")
    kmeans_rounds: int = Field(1, ge=0, description="Hard k-means refinements after the init.")
    threshold: float | None = Field(
        None, gt=0, lt=1, description="Ignore targets whose predicted confidence is below this."
    )
