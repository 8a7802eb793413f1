"""Typed strategy params: a pydantic model with defaults and bounds, errors that name the field.

A strategy declares its params as a model::

    class Params(BaseModel):
        fast: int = Field(10, ge=1, description="bars in the fast average")
        qty: Decimal = Field(Decimal("0.001"), gt=0)

The config hands params over as text (decimals stay exact); :func:`parse_params` validates them
into the model, and any problem becomes a :class:`~strategies.base.ParamError` naming the field,
so the config loader and the backtest CLI report ``params.fast: ...``. A name the model does not
declare is refused unless the model sets ``extra="allow"``: a misspelt param must fail loudly,
not silently fall back to its default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from strategies.base import ParamError

M = TypeVar("M", bound=BaseModel)


def parse_params(model: type[M], params: Mapping[str, str]) -> M:
    """``params`` validated into ``model``; raises :class:`ParamError` at the first problem."""
    if model.model_config.get("extra") != "allow":
        known = set(model.model_fields)
        for name in params:
            if name not in known:
                raise ParamError(name, f"unknown param; expected one of {sorted(known)}")
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = ".".join(str(part) for part in error["loc"]) or "params"
        message = _MESSAGES.get(error["type"]) or str(error["msg"]).removeprefix("Value error, ")
        message = message.replace("Input should be", "must be")
        raw = error.get("input")
        if error["type"] != "missing" and isinstance(raw, str | int | float):
            message += f", got {raw!r}"
        raise ParamError(loc, message) from None


_MESSAGES = {
    "missing": "is required",
    "decimal_parsing": "must be a decimal number",
    "decimal_type": "must be a decimal number",
    "finite_number": "must be finite",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ParamInfo:
    """One declared param, as ``tradectl strategies`` lists it."""

    name: str
    type: str
    #: the default as text, or ``None`` when the param is required
    default: str | None
    description: str
    #: bounds such as ``>= 1``, ``> 0``
    bounds: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "required": self.default is None,
            "bounds": list(self.bounds),
            "description": self.description,
        }


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def describe_params(model: type[BaseModel]) -> tuple[ParamInfo, ...]:
    out: list[ParamInfo] = []
    for name, info in model.model_fields.items():
        default: str | None
        if info.default is PydanticUndefined and info.default_factory is None:
            default = None
        elif info.default_factory is not None:
            default = str(info.get_default(call_default_factory=True))
        else:
            default = _text(info.default)
        bounds: list[str] = []
        for meta in info.metadata:
            for attr, symbol in _BOUNDS:
                value = getattr(meta, attr, None)
                if value is not None:
                    bounds.append(f"{symbol} {str(value).replace('E+', 'e')}")
        out.append(
            ParamInfo(
                name=name,
                type=_type_name(info.annotation),
                default=default,
                description=info.description or "",
                bounds=tuple(bounds),
            )
        )
    return tuple(out)


def _type_name(annotation: Any) -> str:
    """``int``, ``decimal``, ``decimal or none``: what a user writes, not the Python type."""
    args = get_args(annotation)
    if args:
        return " or ".join(_type_name(a) for a in args)
    if annotation is type(None):
        return "none"
    name = getattr(annotation, "__name__", None) or str(annotation)
    return "decimal" if name == "Decimal" else name


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return str(value)
    return str(value)
