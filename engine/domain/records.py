"""``dataclasses.replace``, and construction, for the frozen slotted records a backtest makes
on every order.

``replace`` looks the fields up, gathers keyword arguments, and runs the generated ``__init__``
(a frozen write per field) and ``__post_init__``: several microseconds for an intent or a
position, paid a few times per order. :func:`replacer` makes, once per class, a function that
copies the slots and sets the changes directly, as the dataclass machinery generates its own
methods: a fraction of the time. It runs no ``__post_init__``: the caller answers for the new
values passing the class's checks (the old ones did). :func:`builder` makes the same kind of
function for construction, every field given in order (its ``__post_init__`` still runs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

R = TypeVar("R")

_MADE: dict[type, Callable[..., Any]] = {}


def replacer(cls: type[R]) -> Callable[..., R]:
    """``replace(record, **changes)`` for instances of exactly ``cls`` (a frozen dataclass with
    slots): ``dataclasses.replace`` without ``__init__`` and ``__post_init__``."""
    made = _MADE.get(cls)
    if made is not None:
        return made
    if not dataclasses.is_dataclass(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a dataclass with slots")
    names = [f.name for f in dataclasses.fields(cls)]
    setters = {f"_set_{n}": _slot(cls, n).__set__ for n in names}
    params = ", ".join(f"{n}=_KEEP" for n in names)
    body = "\n".join(f"    _set_{n}(new, record.{n} if {n} is _KEEP else {n})" for n in names)
    source = (
        f"def replace(record, /, *, {params}):\n"
        f"    if type(record) is not _cls:\n"
        f"        raise TypeError(f'a {{type(record).__name__}}, not a {cls.__name__}')\n"
        f"    new = _new(_cls)\n{body}\n    return new\n"
    )
    scope: dict[str, Any] = {"_KEEP": _KEEP, "_new": object.__new__, "_cls": cls, **setters}
    exec(source, scope)  # generated from the field names, as dataclasses makes its methods
    made = _MADE[cls] = scope["replace"]
    return made  # type: ignore[no-any-return]


def builder(cls: type[R]) -> Callable[..., R]:
    """``cls(**fields)`` as ``build(*fields)``, every field given in the order the dataclass
    declares them: the same record, without the keyword parsing and the frozen write per field
    of the generated ``__init__`` (``__post_init__``, if any, runs as it would)."""
    if not dataclasses.is_dataclass(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a dataclass with slots")
    names = [f.name for f in dataclasses.fields(cls)]
    setters = {f"_set_{n}": _slot(cls, n).__set__ for n in names}
    body = "\n".join(f"    _set_{n}(new, {n})" for n in names)
    check = "    new.__post_init__()\n" if hasattr(cls, "__post_init__") else ""
    source = (
        f"def build({', '.join(names)}, /):\n    new = _new(_cls)\n{body}\n{check}    return new\n"
    )
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls, **setters}
    exec(source, scope)  # generated from the field names, as dataclasses makes its methods
    return scope["build"]  # type: ignore[no-any-return]


def _slot(cls: type, name: str) -> Any:
    """The member descriptor of slot ``name`` (defined on ``cls`` or a base)."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    raise TypeError(f"{cls.__name__} has no slot {name!r}")


class _Keep:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<keep>"


_KEEP = _Keep()
