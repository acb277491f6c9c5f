"""The `params:` section: what a search varies, and its one translation, to Optuna's
distributions (the searcher, ``--dry-run`` and the report's param importance use it).

Each entry maps a dotted config key (``train.lr``, ``method_args.lambda_max``) to either a
constant or one distribution written as a one-key mapping::

    train.lr: {loguniform: [1.0e-4, 1.0e-1]}
    method_args.gamma: {uniform: [5, 15]}
    train.batch_size: {choice: [32, 64, 128]}
    method_args.discriminator_layers: {int: [1, 3]}

That the key names a real field, and that every value the distribution can produce is a valid
value for it, is checked by ``raydm.config`` against the schema.

Optuna stores only None, bool, int, float and str choices; any other option (a list of layer
widths) travels as its JSON text, ``optuna_value``, and ``from_optuna`` turns it back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float

    def probe_values(self) -> list[Any]:
        # An interior value too: a continuous range on an integer field fails here, not in
        # every trial.
        return [self.low, self.high, _interior(self.low, self.high)]

    def to_optuna(self):
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high, log=True)

    def from_optuna(self, value: Any) -> float:
        return float(value)

    def to_yaml(self) -> dict:
        return {"loguniform": [self.low, self.high]}


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def probe_values(self) -> list[Any]:
        return [self.low, self.high, _interior(self.low, self.high)]

    def to_optuna(self):
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high)

    def from_optuna(self, value: Any) -> float:
        return float(value)

    def to_yaml(self) -> dict:
        return {"uniform": [self.low, self.high]}


@dataclass(frozen=True)
class IntRange:
    """Integers from low to high, both included."""

    low: int
    high: int

    def probe_values(self) -> list[Any]:
        return [self.low, self.high]

    def to_optuna(self):
        from optuna.distributions import IntDistribution

        return IntDistribution(self.low, self.high)  # both bounds included, as in the YAML

    def from_optuna(self, value: Any) -> int:
        return int(float(value))  # a results.csv cell may read 3.0

    def to_yaml(self) -> dict:
        return {"int": [self.low, self.high]}


@dataclass(frozen=True)
class Choice:
    options: tuple[Any, ...]

    def probe_values(self) -> list[Any]:
        return list(self.options)

    def to_optuna(self):
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution([optuna_value(option) for option in self.options])

    def from_optuna(self, value: Any) -> Any:
        """The option ``value`` stands for: the option itself or its Optuna value (of the same
        type), else the option whose text it is (a results.csv cell, also as older raydm
        versions wrote lists: Python's text of them)."""
        for option in self.options:
            for same in (option, optuna_value(option)):
                if type(value) is type(same) and value == same:
                    return option
        if isinstance(value, str):
            for option in self.options:
                if value in (str(optuna_value(option)), str(option)):
                    return option
        raise ValueError(f"{value!r} is not one of the choices {list(self.options)}")

    def to_yaml(self) -> dict:
        return {"choice": list(self.options)}


Distribution = LogUniform | Uniform | IntRange | Choice


def parse_param(raw: Any) -> Distribution | None:
    """Return the distribution ``raw`` describes, or None when ``raw`` is a constant.

    Raises ValueError with a message fit for a one-line user error.
    """
    if not isinstance(raw, dict):
        return None
    if len(raw) != 1 or next(iter(raw)) not in DISTRIBUTIONS:
        keys = ", ".join(map(str, raw)) or "nothing"
        raise ValueError(
            f"a searched param is one mapping of {', '.join(DISTRIBUTIONS)}; got {keys}"
        )
    kind, args = next(iter(raw.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ValueError(f"choice takes a non-empty list, got {args!r}")
        # Optuna tells its choices apart by ==, so 1, 1.0 and true are one choice to it.
        encoded = [optuna_value(option) for option in args]
        for i, option in enumerate(encoded):
            if option in encoded[:i]:
                raise ValueError(f"choice options must differ (to Optuna), got {args[i]!r} twice")
        return Choice(tuple(args))
    if not isinstance(args, list) or len(args) != 2:
        raise ValueError(f"{kind} takes a list [lo, hi], got {args!r}")
    if kind == "int":
        low, high = (_as_int(v, kind) for v in args)
    else:
        low, high = (_as_float(v, kind) for v in args)
    if low >= high:
        raise ValueError(f"{kind} needs lo < hi, got [{low}, {high}]")
    if kind == "loguniform":
        if low <= 0:
            raise ValueError(f"loguniform needs bounds > 0, got [{low}, {high}]")
        return LogUniform(low, high)
    if kind == "uniform":
        return Uniform(low, high)
    return IntRange(low, high)


def _interior(low: float, high: float) -> float:
    value = low + (high - low) * 0.382
    return value if not float(value).is_integer() else value + (high - low) * 1e-3


def _as_float(value: Any, kind: str) -> float:
    # YAML 1.1 reads 1e-3 (no dot) as a string; accept it as the number it plainly is.
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{kind} bounds must be numbers, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"{kind} bounds must be finite numbers, got {value!r}")
    return number


def _as_int(value: Any, kind: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{kind} bounds must be integers, got {value!r}")
    return value


def optuna_value(option: Any) -> Any:
    """``option`` as Optuna can store it: itself when None, bool, int, float or str, else its
    JSON text."""
    if option is None or isinstance(option, (bool, int, float, str)):
        return option
    return json.dumps(option)


def optuna_space(params: dict[str, Distribution]) -> dict[str, Any]:
    """The searched params as Optuna distributions (constants are already in the config)."""
    return {key: dist.to_optuna() for key, dist in params.items()}


def sampled_values(params: dict[str, Distribution], sampled: dict[str, Any]) -> dict[str, Any]:
    """The config values of the params a searcher sampled (those it did: a trial that never
    started has none). A sampled None is a value: a choice may offer null."""
    return {key: dist.from_optuna(sampled[key]) for key, dist in params.items() if key in sampled}
