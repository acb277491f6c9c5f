"""The sections an ``ExperimentConfig`` is made of (``raydm.config``): data, model, training,
search and resources, each field documented where it is declared (docs/search-space.md is
written from them)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    SerializeAsAny,
    ValidationInfo,
    field_validator,
    model_validator,
)

from raydm.backbones import BACKBONES
from raydm.data import absolute_domain, find_domain
from raydm.metrics import ENSV, SELECTABLE, SELECTORS
from raydm.options import Section
from raydm.registry import Registry


def registered_name(registry: Registry, name: str) -> str:
    if name not in registry:
        raise ValueError(registry.unknown_message(name))
    return name


def typed_args(registry: Registry, chosen: str | None, raw: Any) -> BaseModel | Any:
    """Validate ``raw`` options with the Args model of the chosen registry entry."""
    if chosen is None:  # the name itself was invalid and is reported on its own key
        return raw
    args_model = registry.get(chosen).Args
    return raw if isinstance(raw, args_model) else args_model.model_validate(raw or {})


class DataConfig(Section):
    root: str = Field("~/.cache/raydm", description="Directory where datasets are cached.")
    source: str = Field("digits_printed", description="Labelled source domain name.")
    target: str = Field("digits_handwritten", description="Unlabelled target domain name.")
    seed: int = Field(0, description="Seed for generating and splitting the data.")
    source_val_fraction: float = Field(
        0.2, gt=0, lt=1, description="Held-out share of the source, for label-free selection."
    )
    target_test_fraction: float = Field(
        0.3, gt=0, lt=1, description="Labelled share of the target kept for the oracle figure."
    )
    moons_rotation: float = Field(35.0, description="Rotation of moons_rotated, degrees.")
    moons_noise: float = Field(0.1, ge=0, description="Gaussian noise of the moons samples.")
    moons_samples: int = Field(300, ge=20, description="Points per moons domain (both classes).")
    image_size: int = Field(
        32,
        ge=8,
        description="Side of the square images are resized to; default: the backbone's "
        "(32 for the digits nets, 256 for ResNets).",
    )
    image_channels: Literal[1, 3] = Field(
        1, description="1 (grey) or 3 (RGB); default: the backbone's (ResNets need 3)."
    )
    crop_size: int | None = Field(
        None,
        ge=8,
        description="Random crop in training, centre crop in evaluation; default: the "
        "backbone's (224 for ResNets, none for the digits nets).",
    )
    flip: bool = Field(
        False, description="Random horizontal flips in training; default: the backbone's."
    )
    storage: Literal["auto", "memory", "stream"] = Field(
        "auto",
        description="Image files: decoded once into memory, or per batch by DataLoader "
        "workers (stream); auto: memory when they fit memory_budget_mb.",
    )
    memory_budget_mb: float = Field(
        2048, gt=0, description="Decoded size (uint8) up to which auto keeps images in memory."
    )
    printed_per_class: int = Field(
        500, ge=10, description="Images rendered per digit class for digits_printed."
    )

    @field_validator("root")
    @classmethod
    def _absolute_root(cls, root: str) -> str:
        # A relative root would mean another folder in a trial or from another directory.
        return root if root.startswith("~") else os.path.abspath(root)

    @property
    def root_path(self) -> Path:
        return Path(self.root).expanduser().resolve()

    @field_validator("source", "target")
    @classmethod
    def _known_domain(cls, name: str) -> str:
        find_domain(name)  # raises ValueError naming what is wrong
        return absolute_domain(name)


class ModelConfig(Section):
    backbone: str = Field(
        "lenet", description="Feature extractor: lenet, dtn, mlp, resnet50 or resnet101."
    )
    backbone_args: SerializeAsAny[BaseModel] = Field(
        default_factory=dict, description="Options of the chosen backbone (below)."
    )
    classifier_hidden: list[int] = Field(
        default_factory=lambda: [100, 100],
        description="Hidden widths of the label classifier on top of the features.",
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before each classifier layer.")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, name: str) -> str:
        return registered_name(BACKBONES, name)

    @field_validator("backbone_args", mode="before")
    @classmethod
    def _typed_backbone_args(cls, raw: Any, info) -> BaseModel | Any:
        return typed_args(BACKBONES, info.data.get("backbone"), raw)


class TrainConfig(Section):
    epochs: int = Field(10, ge=1, description="Planned epochs; schedules span all of them.")
    batch_size: int = Field(64, ge=2, description="Images per domain in each batch.")
    iters_per_epoch: int | None = Field(
        None, ge=1, description="Iterations per epoch; default: source train size // batch_size."
    )
    optimizer: Literal["sgd"] = Field("sgd", description="Optimiser (SGD, as in the papers).")
    lr: float = Field(0.01, gt=0, description="Initial learning rate mu_0.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    nesterov: bool = Field(False, description="Nesterov momentum.")
    weight_decay: float = Field(5e-4, ge=0, description="L2 weight decay.")
    lr_schedule: Literal["inverse", "constant"] = Field(
        "inverse", description="inverse: mu_p = mu_0 / (1 + alpha p)^beta (DANN); constant: mu_0."
    )
    lr_alpha: float = Field(10.0, ge=0, description="alpha of the inverse schedule.")
    lr_beta: float = Field(0.75, ge=0, description="beta of the inverse schedule.")
    backbone_lr_mult: float = Field(
        1.0, gt=0, description="Learning-rate multiplier of the backbone (e.g. 0.1 if pretrained)."
    )
    eval_batch_size: int = Field(
        256,
        ge=1,
        description="Batch size for evaluation passes (on a CPU, a LeNet epoch's evaluation "
        "ran 1.7x faster in batches of 256 than of 1024; a GPU may take more).",
    )
    validation_samples: int = Field(
        4096,
        ge=10,
        description="Unlabelled target samples (a fixed, seeded subset) the label-free "
        "validators score each epoch.",
    )
    seed: int = Field(0, description="Seed of initialisation and batch order.")


class SearcherConfig(Section):
    type: Literal["optuna"] = Field("optuna", description="Search algorithm proposing configs.")
    sampler: Literal["tpe", "random"] = Field(
        "tpe", description="Optuna sampler: tpe (model-based) or random (the baseline)."
    )
    seed: int = Field(0, description="Seed of the sampler.")
    n_startup_trials: int = Field(
        5, ge=1, description="Random trials before TPE models the results."
    )


class SchedulerConfig(Section):
    type: Literal["asha", "fifo"] = Field(
        "asha", description="asha: stop weak trials early; fifo: run every trial to the end."
    )
    grace_period: int = Field(
        1, ge=1, description="Epochs every trial runs before ASHA may stop it."
    )
    reduction_factor: float = Field(
        3.0, gt=1, description="ASHA keeps 1/reduction_factor per rung."
    )
    max_t: int | None = Field(
        None,
        ge=1,
        description="ASHA's last rung: train.epochs, the default and the only value accepted.",
    )
    time_attr: Literal["training_iteration", "epoch"] = Field(
        "training_iteration", description="What ASHA counts (one per reported epoch)."
    )
    cutoff: Literal["rank", "quantile"] = Field(
        "rank",
        description="rank (Optuna's SuccessiveHalvingPruner): a trial goes on at a rung only if "
        "it is among the best n/reduction_factor of the n trials there, itself included, and "
        "the best while fewer than reduction_factor are; "
        "quantile (Ray's ASHA): if its value reaches the (1 - 1/reduction_factor) quantile of "
        "the trials already there, which lets the second of three through.",
    )

    def rungs(self, max_t: int) -> list[float]:
        """The epochs at which ASHA compares trials (where Ray's ASHAScheduler puts its
        rungs), then ``max_t``."""
        grace = min(self.grace_period, max_t)
        count = int(math.log(max_t / grace) / math.log(self.reduction_factor) + 1e-9) + 1
        rungs = [grace * self.reduction_factor**k for k in range(count)]
        return sorted({*(r for r in rungs if r < max_t), float(max_t)})


class SearchConfig(Section):
    metric: str = Field("val/source_acc", description="Reported metric that ranks trials.")
    mode: Literal["max", "min"] | None = Field(
        None,
        description="Whether the metric is maximised; default, and the only mode accepted: the "
        "metric's own direction (min for val/source_loss, max for the others).",
    )
    select: str | None = Field(
        None,
        description="What the final pick ranks every (trial, epoch) of the search by: a "
        f"reported metric, or {ENSV} (agreement with the ensemble of all of them); default: "
        "metric. metric still steers TPE and ASHA while the search runs.",
    )
    allow_oracle: bool = Field(
        False, description="Permit selecting on oracle/* metrics, which use target labels."
    )
    num_samples: int = Field(16, ge=1, description="Number of trials.")
    max_concurrent: int | None = Field(
        None,
        ge=1,
        description="Trials running at once; default: as many as the machine's resources fit "
        "(joined clusters: num_samples, for the autoscaler).",
    )
    max_failures: int = Field(2, ge=0, description="Retries of a trial that crashes.")
    keep_checkpoints: int | Literal["all"] | None = Field(
        None,
        description="Checkpoints (model and resume state) each trial keeps besides its latest: "
        "its k best epochs by the final selector, or all; default: 1, or all with select: "
        f"{ENSV}, which ranks every epoch. The final pick is a kept checkpoint.",
    )
    costly_validators: Literal["ranked", "rungs", "every_epoch"] = Field(
        "ranked",
        description="Where SND, ClassAMI, MixVal, IWCV, DEV and DEVN are computed. ranked: "
        "only one the search ranks or selects by, at every epoch (no pick needs the others, and "
        "they cost more than the rest of an epoch's evaluation); rungs: all of them at "
        "the epochs where ASHA compares trials and at each trial's last (under fifo: the "
        "last); every_epoch: all of them at every epoch. The other epochs report them as nan.",
    )
    searcher: SearcherConfig = Field(default_factory=SearcherConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, name: str) -> str:
        if name not in SELECTABLE:
            raise ValueError(f"unknown metric {name!r}; choose one of: {', '.join(SELECTABLE)}")
        return name

    @field_validator("mode")
    @classmethod
    def _mode_of_the_metric(cls, mode: str | None, info: ValidationInfo) -> str | None:
        direction = SELECTABLE.get(info.data.get("metric", ""))
        if direction is None:  # the metric was refused already
            return mode
        if mode is not None and mode != direction:
            better = "higher" if direction == "max" else "lower"
            raise ValueError(
                f"{mode} would rank {info.data['metric']} backwards: it is "
                f"better {better}; use {direction}, or leave mode out"
            )
        return direction

    @field_validator("select")
    @classmethod
    def _known_selector(cls, name: str | None) -> str | None:
        if name is not None and name not in SELECTORS:
            raise ValueError(f"unknown selector {name!r}; choose one of: {', '.join(SELECTORS)}")
        return name

    @field_validator("keep_checkpoints", mode="before")
    @classmethod
    def _a_count_or_all(cls, keep: Any) -> Any:
        if keep is None or keep == "all" or isinstance(keep, bool):
            return keep  # a bool is refused, as for every number
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep at least 1 checkpoint per trial, or all; got {keep!r}")
        return keep

    @property
    def selector(self) -> str:
        """What the final pick ranks by: select, or metric."""
        return self.select or self.metric

    def ranking_words(self) -> str:
        """What ranks the trials and what makes the final pick, for a command's first line."""
        steered = f"ranked by {self.metric} ({self.mode})"
        return steered if self.selector == self.metric else f"{steered}, picked by {self.selector}"

    def checkpoint_ranking(self) -> tuple[str, str]:
        """The metric and mode a trial's checkpoints are ranked by to keep the best: the
        selector when it is a metric (in its own direction unless it is metric), else
        metric."""
        if self.selector in (self.metric, ENSV):
            return self.metric, self.mode
        return self.selector, SELECTABLE[self.selector]

    def checkpoints_per_trial(self) -> int | None:
        """How many checkpoints each trial keeps by ``checkpoint_ranking`` besides its
        latest; None: all of them."""
        if self.keep_checkpoints is None:
            return None if self.selector == ENSV else 1
        return None if self.keep_checkpoints == "all" else self.keep_checkpoints

    @model_validator(mode="after")
    def _oracle_needs_consent(self) -> SearchConfig:
        for name in (self.metric, self.select or ""):
            if name.startswith("oracle/") and not self.allow_oracle:
                raise ValueError(
                    f"{name} uses target labels, which real UDA does not have; "
                    "choose a label-free metric or set search.allow_oracle: true"
                )
        return self


class ResourcesConfig(Section):
    cpu: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="CPUs per trial (torch's threads; DataLoader workers if streaming).",
    )
    gpu: float | Literal["auto"] = Field(
        0.0,
        description="GPUs per trial: 0, a whole number, 1/k (k trials share a GPU), or auto: "
        "the smallest 1/k share that fits a trial's measured peak memory.",
    )

    @field_validator("gpu")
    @classmethod
    def _packable_fraction(cls, gpu: float | str) -> float | str:
        # Ray can hang on fractions that do not tile a GPU (e.g. 0.3); allow 1/k or whole.
        if gpu != "auto" and (gpu < 0 or not math.isfinite(gpu)):
            raise ValueError(f"gpu must be 0 or more, got {gpu}")
        if gpu == "auto" or gpu == 0 or float(gpu).is_integer():
            return gpu
        if 0 < gpu < 1 and math.isclose(1 / gpu, round(1 / gpu), rel_tol=1e-6):
            return gpu
        raise ValueError(f"gpu must be 0, a whole number, 1/k (0.5, 0.25, ...) or auto, got {gpu}")

    @property
    def wants_gpu(self) -> bool:
        return self.gpu == "auto" or self.gpu > 0
