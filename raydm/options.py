"""The validated base of every options model: config sections, method and backbone options."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, field_validator


class Section(BaseModel):
    # Numbers are accepted where text is expected (--set data.root=2024 is a path), and
    # booleans are refused where numbers are expected (true is not an epoch count).
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, coerce_numbers_to_str=True
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info) -> Any:
        annotation = cls.model_fields[info.field_name].annotation
        numeric = annotation in (int, float) or bool({int, float} & set(get_args(annotation)))
        if isinstance(value, bool) and numeric:
            raise ValueError(f"expected a number, got {value}")
        return value
