"""Seeded fault injection: which faults may fire, how often, and how often they did.

A plan is a list of rules, each ``kind`` + ``probability`` (+ an optional endpoint filter, a cap on
how often it may fire, and kind-specific parameters). Every rule draws from its own
``random.Random`` seeded from the simulator seed and the rule's position, so adding a rule never
changes when another one fires, and the same seed and the same request sequence fire the same
faults. Counters record every firing; the chaos suite reports them.

TOML form (JSON is the same shape)::

    [[fault]]
    kind = "drop_response"
    probability = 0.2
    endpoints = ["POST /api/v3/order"]
    mode = "close"            # or "hang"
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine.exceptions import ConfigError
from engine.venues.simulator.files import load_mapping


class FaultKind(StrEnum):
    LATENCY = "latency"  #: ``seconds`` (default 0.2) added before the request is handled
    #: the request IS processed, then the answer is lost: ``mode`` "close" aborts the TCP
    #: connection, "hang" holds it open until the client gives up (or ``hang_seconds``)
    DROP_RESPONSE = "drop_response"
    #: ``status`` (default 503); ``after_accept`` (default false) processes the request first
    HTTP_5XX = "http_5xx"
    #: Binance -1007 "execution status unknown"; ``after_accept`` (default true), ``status`` 503
    ERROR_1007 = "error_1007"
    #: -1003 with HTTP 429 and ``Retry-After: retry_after`` (default 1); the request is refused
    #: and so is every request until the window ends
    RATE_LIMIT_429 = "rate_limit_429"
    IP_BAN_418 = "ip_ban_418"  #: as 429, with HTTP 418 (the IP-ban answer)
    WS_DISCONNECT_USER = "ws_disconnect_user"  #: closes a user-data connection before an event
    WS_DISCONNECT_MARKET = "ws_disconnect_market"  #: closes a market-stream connection
    #: a market-stream frame whose numbers are text (the client must skip and count it)
    MALFORMED_MARKET_DATA = "malformed_market_data"
    DUPLICATE_EXECUTION_REPORT = "duplicate_execution_report"  #: an executionReport sent twice
    #: an executionReport held back and sent after the next event (or ``hold_seconds``)
    REORDER_EXECUTION_REPORT = "reorder_execution_report"
    #: a TRADE executionReport never reaches the stream: the fill is only in ``myTrades``
    DROP_FILL_REPORT = "drop_fill_report"
    #: Kalshi: an ``orderbook_delta`` never reaches a subscriber, whose ``seq`` then skips one
    ORDERBOOK_GAP = "orderbook_gap"
    #: on cancel, part of the open remainder (``fraction``, default 0.5) fills just before the
    #: cancel lands: the cancel answer is CANCELED with ``executedQty > 0``
    PARTIAL_FILL_CANCEL_RACE = "partial_fill_cancel_race"
    #: Kalshi: the create takes effect and the answer is the 409 a retried create gets (the
    #: client order id is open already): the client must look the order up, not call it refused
    DUPLICATE_CREATE_409 = "duplicate_create_409"


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultRule:
    kind: FaultKind
    #: chance of firing at each opportunity, in [0, 1] (a float: it is a probability, not money)
    probability: float
    #: "METHOD /path" or "/path" filters for HTTP faults; empty means every endpoint
    endpoints: tuple[str, ...] = ()
    #: stop firing after this many times (``None``: no cap)
    max_count: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        if not self.endpoints:
            return True
        for ep in self.endpoints:
            if " " in ep:
                m, p = ep.split(" ", 1)
                if m.upper() == method.upper() and p == path:
                    return True
            elif ep == path:
                return True
        return False

    def param(self, name: str, default: Any) -> Any:
        return self.params.get(name, default)

    def to_mapping(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "probability": self.probability}
        if self.endpoints:
            out["endpoints"] = list(self.endpoints)
        if self.max_count is not None:
            out["max_count"] = self.max_count
        out.update(self.params)
        return out

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FaultRule:
        try:
            kind = FaultKind(str(data["kind"]))
        except KeyError as exc:
            raise ConfigError("fault rule needs a 'kind'") from exc
        except ValueError as exc:
            known = ", ".join(k.value for k in FaultKind)
            raise ConfigError(f"unknown fault kind {data['kind']!r}; known: {known}") from exc
        probability = float(data.get("probability", 1.0))
        if not 0.0 <= probability <= 1.0:
            raise ConfigError(f"fault {kind}: probability must be in [0, 1], got {probability}")
        endpoints = data.get("endpoints", ())
        if isinstance(endpoints, str):
            endpoints = (endpoints,)
        max_count = data.get("max_count")
        params = {
            k: v
            for k, v in data.items()
            if k not in {"kind", "probability", "endpoints", "max_count"}
        }
        return cls(
            kind=kind,
            probability=probability,
            endpoints=tuple(str(e) for e in endpoints),
            max_count=None if max_count is None else int(max_count),
            params=params,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultPlan:
    rules: tuple[FaultRule, ...] = ()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> FaultPlan:
        """Accepts ``{"fault": [...]}`` / ``{"faults": [...]}`` / ``{"rules": [...]}`` or a list."""
        if isinstance(data, Mapping):
            items: Any = data.get("fault", data.get("faults", data.get("rules", [])))
        else:
            items = data
        return cls(rules=tuple(FaultRule.from_mapping(r) for r in items))

    @classmethod
    def load(cls, path: str | Path) -> FaultPlan:
        """Load a ``.toml`` or ``.json`` fault file."""
        try:
            return cls.from_mapping(load_mapping(Path(path)))
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            # valid TOML of the wrong shape fails deep in from_mapping
            raise ConfigError(f"{path}: not a fault plan ({exc!r})") from None

    def to_mapping(self) -> dict[str, Any]:
        return {"faults": [r.to_mapping() for r in self.rules]}


class FaultInjector:
    """Decides, deterministically for a seed, whether a fault fires; counts every firing."""

    def __init__(self, plan: FaultPlan, *, seed: int) -> None:
        self._seed = seed
        self.counters: dict[str, int] = {k.value: 0 for k in FaultKind}
        self._set(plan, generation=0)

    def _set(self, plan: FaultPlan, *, generation: int) -> None:
        self.plan = plan
        self._generation = generation
        # one stream per rule: rules never perturb each other's draws
        self._rngs = [
            random.Random(f"{self._seed}:{generation}:{i}:{r.kind.value}")
            for i, r in enumerate(plan.rules)
        ]
        self._fired = [0] * len(plan.rules)

    def set_plan(self, plan: FaultPlan) -> None:
        """Replace the rules (counters are kept: they describe the whole run)."""
        self._set(plan, generation=self._generation + 1)

    def roll(self, kind: FaultKind, *, method: str = "", path: str = "") -> FaultRule | None:
        """Draw for every rule of ``kind`` that matches; the first that fires is returned."""
        fired: FaultRule | None = None
        for i, rule in enumerate(self.plan.rules):
            if rule.kind is not kind or (method and not rule.matches(method, path)):
                continue
            if rule.max_count is not None and self._fired[i] >= rule.max_count:
                continue
            # always draw, even once one has fired, so a rule's stream depends only on the
            # opportunities it saw
            hit = self._rngs[i].random() < rule.probability
            if hit and fired is None:
                fired = rule
                self._fired[i] += 1
        if fired is not None:
            # .get: counters restored from a snapshot older than this kind lack it
            self.counters[kind.value] = self.counters.get(kind.value, 0) + 1
        return fired

    def count(self, name: str) -> None:
        """Count a derived event (e.g. a request refused inside a rate-limit window)."""
        self.counters[name] = self.counters.get(name, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_mapping(),
            "generation": self._generation,
            "counters": dict(self.counters),
            "fired": list(self._fired),
            "rng_states": [_state_to_json(r.getstate()) for r in self._rngs],
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        self._set(FaultPlan.from_mapping(data["plan"]), generation=int(data["generation"]))
        self.counters = {str(k): int(v) for k, v in dict(data["counters"]).items()}
        self._fired = [int(x) for x in data["fired"]]
        for rng, state in zip(self._rngs, data["rng_states"], strict=True):
            rng.setstate(_state_from_json(state))


def _state_to_json(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss_next = state
    return [version, list(internal), gauss_next]


def _state_from_json(data: list[Any]) -> tuple[Any, ...]:
    version, internal, gauss_next = data
    return (version, tuple(internal), gauss_next)
