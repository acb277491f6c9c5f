"""The experiment configuration: one YAML file validated into one ``ExperimentConfig``.

Everything downstream (the Tune wiring, the trainable, ``raydm train``) receives this object;
nothing re-reads YAML. Errors name the file and the dotted key path and fit on one line.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from raydm.backbones import BACKBONES
from raydm.data import absolute_domain, find_domain
from raydm.methods import METHODS
from raydm.metrics import ENSV, SELECTABLE, SELECTORS
from raydm.options import Section
from raydm.registry import Registry
from raydm.search_space import Distribution, parse_param


def _registered(registry: Registry, name: str) -> str:
    if name not in registry:
        raise ValueError(registry.unknown_message(name))
    return name


def _typed_args(registry: Registry, chosen: str | None, raw: Any) -> BaseModel | Any:
    """Validate ``raw`` options with the Args model of the chosen registry entry."""
    if chosen is None:  # the name itself was invalid and is reported on its own key
        return raw
    args_model = registry.get(chosen).Args
    return raw if isinstance(raw, args_model) else args_model.model_validate(raw or {})


class ConfigError(Exception):
    """A user's configuration is invalid; the message is one line naming file and key."""


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
        return _registered(BACKBONES, name)

    @field_validator("backbone_args", mode="before")
    @classmethod
    def _typed_backbone_args(cls, raw: Any, info) -> BaseModel | Any:
        return _typed_args(BACKBONES, info.data.get("backbone"), raw)


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
    max_t: int | None = Field(None, ge=1, description="Last rung; default: train.epochs.")
    time_attr: Literal["training_iteration", "epoch"] = Field(
        "training_iteration", description="What ASHA counts (one per reported epoch)."
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
    mode: Literal["max", "min"] = Field("max", description="Whether the metric is maximised.")
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
    searcher: SearcherConfig = Field(default_factory=SearcherConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, name: str) -> str:
        if name not in SELECTABLE:
            raise ValueError(f"unknown metric {name!r}; choose one of: {', '.join(SELECTABLE)}")
        return name

    @field_validator("select")
    @classmethod
    def _known_selector(cls, name: str | None) -> str | None:
        if name is not None and name not in SELECTORS:
            raise ValueError(f"unknown selector {name!r}; choose one of: {', '.join(SELECTORS)}")
        return name

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
        1.0, gt=0, description="CPUs per trial (torch's threads; DataLoader workers if streaming)."
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
        if gpu == "auto" or gpu == 0 or float(gpu).is_integer():
            return gpu
        if 0 < gpu < 1 and math.isclose(1 / gpu, round(1 / gpu), rel_tol=1e-6):
            return gpu
        raise ValueError(f"gpu must be 0, a whole number, 1/k (0.5, 0.25, ...) or auto, got {gpu}")

    @property
    def wants_gpu(self) -> bool:
        return self.gpu == "auto" or self.gpu > 0


class ExperimentConfig(Section):
    method: str = Field("dann", description="Adaptation method: dann, cgdm or source_only.")
    method_args: SerializeAsAny[BaseModel] = Field(
        default_factory=dict, description="Options of the chosen method (below)."
    )
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    params: dict[str, Distribution] = Field(
        default_factory=dict, description="Searched params: dotted key -> distribution."
    )

    @field_validator("method")
    @classmethod
    def _known_method(cls, name: str) -> str:
        return _registered(METHODS, name)

    @field_validator("method_args", mode="before")
    @classmethod
    def _typed_method_args(cls, raw: Any, info) -> BaseModel | Any:
        return _typed_args(METHODS, info.data.get("method"), raw)

    @model_validator(mode="after")
    def _scheduler_spans_the_schedule(self) -> ExperimentConfig:
        max_t = self.search.scheduler.max_t
        if self.search.scheduler.type == "asha" and max_t is not None and max_t < self.train.epochs:
            raise ValueError(
                f"search.scheduler.max_t {max_t} is below train.epochs {self.train.epochs}: "
                "every trial would stop before its lr and lambda schedules end; lower "
                "train.epochs instead"
            )
        return self

    @model_validator(mode="after")
    def _backbone_fits_data(self) -> ExperimentConfig:
        backbone = BACKBONES.get(self.model.backbone)
        for role in ("source", "target"):
            name = getattr(self.data, role)
            gives = find_domain(name).kind
            if gives != backbone.input_kind:
                raise ValueError(
                    f"model.backbone {self.model.backbone} takes {backbone.input_kind} but "
                    f"data.{role} {name} gives {gives}"
                )
        wanted = backbone.image_input
        if wanted is None:
            return self
        # The backbone decides the image format unless the user set it; a crop keeps the
        # backbone's crop-to-size ratio when only the size is set (224/256 of 64 is 56).
        chosen = self.data.model_fields_set
        size = self.data.image_size if "image_size" in chosen else wanted.size
        defaults = {
            "image_size": size,
            "image_channels": wanted.channels or self.data.image_channels,
            "crop_size": wanted.crop and round(wanted.crop * size / wanted.size),
            "flip": wanted.flip,
        }
        unset = {k: v for k, v in defaults.items() if k not in chosen}
        data = DataConfig.model_validate({**self.data.model_dump(), **unset})
        if wanted.channels is not None and data.image_channels != wanted.channels:
            raise ValueError(
                f"model.backbone {self.model.backbone} takes {wanted.channels}-channel images, "
                f"but data.image_channels is {data.image_channels}"
            )
        if data.crop_size is not None and data.crop_size > data.image_size:
            raise ValueError(
                f"data.crop_size {data.crop_size} is larger than data.image_size {data.image_size}"
            )
        side, key = (
            (data.crop_size, "crop_size") if data.crop_size else (data.image_size, "image_size")
        )
        if side < backbone.min_size:
            raise ValueError(
                f"data.{key} {side} is too small for model.backbone {self.model.backbone}: "
                f"it takes images of at least {backbone.min_size}x{backbone.min_size}"
            )
        return self.model_copy(update={"data": data})

    # --- derived views -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain data that ``config_from_dict`` turns back into an equal config."""
        raw = self.settings_dict()
        raw["params"] = {key: dist.to_yaml() for key, dist in self.params.items()}
        return raw

    def settings_dict(self) -> dict[str, Any]:
        """Every section but ``params``, as plain data."""
        return self.model_dump(mode="json", exclude={"params"})

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def with_values(self, values: dict[str, Any]) -> ExperimentConfig:
        """A copy with dotted keys set (e.g. one trial's sampled params) and the rest kept."""
        raw = self.settings_dict()
        for key, value in values.items():
            set_dotted(raw, key, value)
        still_searched = {k: d for k, d in self.params.items() if k not in values}
        return ExperimentConfig.model_validate(raw).model_copy(update={"params": still_searched})

    def fixed(self, values: dict[str, Any]) -> ExperimentConfig:
        """The complete config of one trial: sampled values set, nothing left to search."""
        missing = sorted(set(self.params) - set(values))
        if missing:
            raise ValueError(f"no value for searched params: {', '.join(missing)}")
        return self.with_values(values)

    def max_epochs(self) -> int:
        return self.search.scheduler.max_t or self.train.epochs


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts; under ``params`` the rest of the key is one name."""
    parts = key.split(".")
    if parts[0] == "params" and len(parts) > 1:
        parts = ["params", ".".join(parts[1:])]
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ValueError(f"{'.'.join(parts[:-1])} is not a section")
        node = child
    node[parts[-1]] = value


def load_config(path: str | Path, overrides: list[str] = ()) -> ExperimentConfig:
    """Read, override (``key.path=value`` strings, values parsed as YAML) and validate."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}:{_yaml_problem(err)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    overridden = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{path}: --set {item!r}: expected key.path=value")
        try:
            set_dotted(raw, key.strip(), yaml.safe_load(text))
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: --set {item}:{_yaml_problem(err)}") from None
        except ValueError as err:
            raise ConfigError(f"{path}: --set {item}: {err}") from None
        overridden[key.strip()] = item
    return config_from_dict(raw, source=str(path), overridden=overridden)


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    where = f" line {mark.line + 1}" if mark else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{where} invalid YAML: {problem}"


def config_from_dict(
    raw: dict[str, Any], source: str = "<config>", overridden: dict[str, str] | None = None
) -> ExperimentConfig:
    """Validate plain data into a config: constants in ``params`` are applied in place, and
    every searched distribution is checked against the field it targets."""
    overridden = overridden or {}
    raw = dict(raw)
    raw_params = raw.pop("params", None) or {}
    if not isinstance(raw_params, dict):
        raise ConfigError(f"{source}: params: expected a mapping of dotted keys")
    distributions: dict[str, Distribution] = {}
    for key, spec in raw_params.items():
        if not isinstance(key, str):
            raise ConfigError(f"{source}: params: key {key!r} is not a dotted field name")
        try:
            dist = parse_param(spec)
        except ValueError as err:
            raise ConfigError(f"{source}: params.{key}: {err}") from None
        if dist is not None:
            distributions[key] = dist
            continue
        try:
            set_dotted(raw, key, spec)
        except ValueError as err:
            raise ConfigError(f"{source}: params.{key}: {err}") from None
    config = _validate(raw, source, overridden)
    for key, dist in distributions.items():
        _check_searchable(config, key, source)
        for value in dist.probe_values():
            probe = config.settings_dict()
            set_dotted(probe, key, value)
            _validate(probe, source, {}, f"params.{key}", value)
    return config.model_copy(update={"params": distributions})


# The data are built once per search and the resources and search settings are fixed before
# any trial starts, so a trial could not vary them.
UNSEARCHABLE = {"data", "resources", "search", "params"}
# Fixed with the data: the backbone sets the image format, and its pretrained weights are
# loaded once by the driver and shipped to the trials with the data.
FIXED_WITH_DATA = {
    "model.backbone",
    "model.backbone_args.pretrained",
    "model.backbone_args.weights_path",
}


def _check_searchable(config: ExperimentConfig, key: str, source: str) -> None:
    node: Any = config
    parts = key.split(".")
    if parts[0] in UNSEARCHABLE:
        raise ConfigError(
            f"{source}: params.{key}: {parts[0]}.* is fixed for the whole search and cannot "
            "vary per trial; set it in its section or run one search per value"
        )
    if key in FIXED_WITH_DATA:
        raise ConfigError(
            f"{source}: params.{key}: the backbone and its weights fix the input pipeline and "
            "are loaded once per search; run one search per value"
        )
    if key == "train.epochs" and config.search.scheduler.type == "asha":
        raise ConfigError(
            f"{source}: params.{key}: ASHA compares trials at the same epoch and plans its "
            "rungs on one epoch count; fix train.epochs or use search.scheduler.type: fifo"
        )
    for depth, part in enumerate(parts):
        fields = type(node).model_fields if isinstance(node, BaseModel) else {}
        if part not in fields:
            known = ", ".join(name for name in fields if name not in UNSEARCHABLE)
            prefix = ".".join(parts[:depth]) or "the top level"
            raise ConfigError(
                f"{source}: params.{key}: {prefix} has no field {part!r} (fields: {known})"
            )
        node = getattr(node, part)


def _validate(
    raw: dict,
    source: str,
    overridden: dict[str, str],
    probing: str | None = None,
    probe_value: Any = None,
) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source, overridden, probing, probe_value)) from None


def _format_errors(
    err: ValidationError,
    source: str,
    overridden: dict[str, str],
    probing: str | None,
    probe_value: Any,
) -> str:
    parts = []
    for error in err.errors():
        loc = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] not in ("value_error", "missing"):
            message += f" (got {error['input']!r})"
        if probing:
            parts.append(f"{probing}: value {probe_value!r} is invalid for {loc}: {message}")
        else:
            via = overridden.get(loc)
            parts.append(f"{loc}: {message}" + (f" (from --set {via})" if via else ""))
    return f"{source}: " + "; ".join(parts)
