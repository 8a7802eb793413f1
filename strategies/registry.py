"""Strategy kinds by name, for the config file, the backtest and ``tradectl strategies``.

A kind is one of:

- a built-in short name (``sma_cross``, ``fair_value``, ``churn``);
- a module path ``"package.module:Name"`` naming a class or factory in the user's own code
  (importable from ``sys.path``/``PYTHONPATH``), so a user strategy needs no edit here;
- a name registered by an installed package under the ``tradectl.strategies`` entry point group
  (``[project.entry-points."tradectl.strategies"] my_kind = "my_pkg.strat:MyStrategy"``).

The target is called as ``target(strategy_id, symbols, params)``. When it has a ``Params``
attribute that is a pydantic model, ``params`` is that model, validated (errors name the field,
see :mod:`strategies.params`); otherwise it is the config's values as text. Its ``version``
attribute (or its module's), when declared, is the strategy version recorded with each
decision; otherwise a hash of the module's source stands in.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import MappingProxyType, ModuleType
from typing import Any

from pydantic import BaseModel

from engine.domain.types import StrategyId, Symbol
from strategies import churn, fair_value, sma_cross
from strategies.base import Strategy
from strategies.params import ParamInfo, describe_params, parse_params

StrategyFactory = Callable[[StrategyId, Sequence[Symbol], Mapping[str, str]], Strategy]

ENTRY_POINT_GROUP = "tradectl.strategies"

REGISTRY: Mapping[str, StrategyFactory] = MappingProxyType(
    {
        "sma_cross": sma_cross.create,
        "fair_value": fair_value.create,
        "churn": churn.create,
    }
)

_BUILTIN_MODULES: Mapping[str, ModuleType] = MappingProxyType(
    {"sma_cross": sma_cross, "fair_value": fair_value, "churn": churn}
)


class UnknownKind(KeyError):
    """The kind names nothing importable; ``str()`` is the one-line reason."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyKind:
    """A resolved kind: how to build it, what params it takes, which code version it is."""

    name: str
    #: ``builtin``, ``module`` or ``entry point``
    origin: str
    factory: StrategyFactory
    params_model: type[BaseModel] | None
    version: str
    summary: str

    def create(
        self, strategy_id: StrategyId, symbols: Sequence[Symbol], params: Mapping[str, str]
    ) -> Strategy:
        return self.factory(strategy_id, symbols, params)

    def params(self) -> tuple[ParamInfo, ...]:
        return () if self.params_model is None else describe_params(self.params_model)


def resolve(kind: str) -> StrategyKind:
    """The kind named ``kind``; raises :class:`UnknownKind` with a one-line reason."""
    if kind in REGISTRY:
        module = _BUILTIN_MODULES.get(kind)
        model = getattr(module, "Params", None) if module is not None else None
        return StrategyKind(
            name=kind,
            origin="builtin",
            factory=REGISTRY[kind],
            params_model=model if _is_model(model) else None,
            version=_version(REGISTRY[kind], module),
            summary=_summary(module),
        )
    if ":" in kind:
        return _from_target(kind, _import_target(kind), origin="module")
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name == kind:
            try:
                target = point.load()
            except Exception as exc:
                raise UnknownKind(
                    f"strategy kind {kind!r} (entry point {point.value}): cannot load: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            return _from_target(kind, target, origin="entry point")
    raise UnknownKind(
        f"unknown strategy kind {kind!r}; known kinds: {sorted(known_kinds())}, or a module "
        "path 'package.module:Name'"
    )


def known_kinds() -> tuple[str, ...]:
    """The built-ins and the installed entry points (module paths are open-ended)."""
    names = list(REGISTRY)
    names += [p.name for p in entry_points(group=ENTRY_POINT_GROUP) if p.name not in REGISTRY]
    return tuple(names)


def create_strategy(
    kind: str, strategy_id: StrategyId, symbols: Sequence[Symbol], params: Mapping[str, str]
) -> Strategy:
    """Build a strategy of ``kind``; :class:`UnknownKind` (a ``KeyError``) names the problem."""
    return resolve(kind).create(strategy_id, symbols, params)


def _import_target(kind: str) -> Any:
    module_name, _, attr = kind.partition(":")
    if not module_name or not attr:
        raise UnknownKind(f"strategy kind {kind!r}: a module path is 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownKind(
            f"strategy kind {kind!r}: cannot import {module_name!r} ({exc}); is its directory "
            "on PYTHONPATH?"
        ) from None
    except Exception as exc:
        raise UnknownKind(
            f"strategy kind {kind!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise UnknownKind(f"strategy kind {kind!r}: {module_name!r} has no {attr!r}")
    return target


def _from_target(kind: str, target: Any, *, origin: str) -> StrategyKind:
    if not callable(target):
        raise UnknownKind(f"strategy kind {kind!r}: {target!r} is not a class or factory")
    model = getattr(target, "Params", None)
    module = sys.modules.get(getattr(target, "__module__", "") or "")
    if _is_model(model):
        assert isinstance(model, type)

        def factory(
            strategy_id: StrategyId, symbols: Sequence[Symbol], params: Mapping[str, str]
        ) -> Strategy:
            built: Strategy = target(strategy_id, tuple(symbols), parse_params(model, params))
            return built

    else:

        def factory(
            strategy_id: StrategyId, symbols: Sequence[Symbol], params: Mapping[str, str]
        ) -> Strategy:
            built: Strategy = target(strategy_id, tuple(symbols), params)
            return built

    return StrategyKind(
        name=kind,
        origin=origin,
        factory=factory,
        params_model=model if _is_model(model) else None,
        version=_version(target, module),
        summary=_summary(target) or _summary(module),
    )


def _is_model(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _version(target: object, module: ModuleType | None) -> str:
    """The declared ``version`` (of the target, else its module), else a hash of the source."""
    for owner in (target, module):
        declared = getattr(owner, "version", None)
        if isinstance(declared, str | int) and not isinstance(declared, bool):
            return str(declared)
    try:
        source = inspect.getsource(module) if module is not None else None
    except (OSError, TypeError):
        source = None
    if source is None:
        return "unknown"
    return "sha256:" + hashlib.sha256(source.encode()).hexdigest()[:16]


def _summary(owner: object) -> str:
    # the object's own docstring: a class without one would otherwise show its base's
    doc = getattr(owner, "__doc__", None) if owner is not None else None
    return inspect.cleandoc(doc).splitlines()[0] if isinstance(doc, str) and doc.strip() else ""
