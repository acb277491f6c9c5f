"""The experiment configuration: one YAML file validated into one ``ExperimentConfig``.

Everything downstream (the Tune wiring, the trainable, ``raydm train``) receives this object;
nothing re-reads YAML. Errors name the file and the dotted key path and fit on one line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

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
from raydm.data import find_domain
from raydm.methods import METHODS
from raydm.metrics import COSTLY_VALIDATORS
from raydm.options import Section
from raydm.search_space import Distribution, parse_param
from raydm.sections import (
    DataConfig,
    ModelConfig,
    ResourcesConfig,
    SearchConfig,
    TrainConfig,
    registered_name,
    typed_args,
)


class ConfigError(Exception):
    """A user's configuration is invalid; the message is one line naming file and key."""


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
        return registered_name(METHODS, name)

    @field_validator("method_args", mode="before")
    @classmethod
    def _typed_method_args(cls, raw: Any, info) -> BaseModel | Any:
        return typed_args(METHODS, info.data.get("method"), raw)

    @model_validator(mode="after")
    def _scheduler_spans_the_schedule(self) -> ExperimentConfig:
        max_t, epochs = self.search.scheduler.max_t, self.train.epochs
        if max_t is None or max_t == epochs:
            return self
        if self.search.scheduler.type == "fifo":
            raise ValueError(
                f"search.scheduler.max_t {max_t} is ASHA's last rung, but fifo runs every trial "
                f"for train.epochs ({epochs}): leave max_t out"
            )
        if max_t < epochs:
            raise ValueError(
                f"search.scheduler.max_t {max_t} is below train.epochs {epochs}: "
                "every trial would stop before its lr and lambda schedules end; lower "
                "train.epochs instead"
            )
        raise ValueError(
            f"search.scheduler.max_t {max_t} is above train.epochs {epochs}: no trial runs "
            "past train.epochs, so the rungs above it would never be reached; leave max_t out"
        )

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

    def costly_validator_epochs(self, last_epoch: int) -> frozenset[int] | None:
        """The epochs at which a trial of this search that ends at ``last_epoch`` computes the
        costly validators (``m.COSTLY_VALIDATORS``); None: every epoch, empty: none."""
        search = self.search
        ranked_by = {search.metric, search.selector}
        if search.costly_validators == "every_epoch" or ranked_by & set(COSTLY_VALIDATORS):
            return None
        if search.costly_validators == "ranked":
            return frozenset()
        scheduler = search.scheduler
        rungs = scheduler.rungs(self.max_epochs()) if scheduler.type == "asha" else []
        # ASHA compares a trial at its first result at or past a rung's milestone.
        return frozenset({*(math.ceil(rung) for rung in rungs), last_epoch})


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: the second would
    silently replace the first (a second train: section, say)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_config(path: str | Path, overrides: list[str] = ()) -> ExperimentConfig:
    """Read, override (``key.path=value`` strings, values parsed as YAML) and validate."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}
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
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{path}: --set {item!r}: expected key.path=value")
        try:
            set_dotted(raw, key, yaml.safe_load(text))
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: --set {item}:{_yaml_problem(err)}") from None
        except ValueError as err:
            raise ConfigError(f"{path}: --set {item}: {err}") from None
        overridden[key] = item
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

# They choose the target samples every validator (and EnsV's ensemble) scores: trials are
# compared, and their softmaxes stacked, only on the same samples.
FIXED_FOR_COMPARISON = {"train.seed", "train.validation_samples"}


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
    if key in FIXED_FOR_COMPARISON:
        raise ConfigError(
            f"{source}: params.{key}: it chooses the target samples the validators score, and "
            "trials are compared on the same ones; run one search per value"
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
