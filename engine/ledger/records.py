"""Values passed into and out of :class:`engine.ledger.ledger.Ledger`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from engine.domain.orders import Order
from engine.domain.risk import Verdict
from engine.domain.types import (
    AccountId,
    ClientOrderId,
    ControlKind,
    ControlScope,
    DecisionId,
    DecisionOutcome,
    OrderType,
    Side,
    StrategyId,
    Symbol,
    TimeInForce,
    TradeId,
    VenueName,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionRecord:
    """A row of ``decisions``: what was decided, on which data, and every verdict."""

    decision_id: DecisionId
    strategy_id: StrategyId
    account: AccountId
    symbol: Symbol
    intent: str  # buy / sell / cancel / hold
    side: Side | None
    quantity: Decimal | None
    limit_price: Decimal | None
    reason: str
    md_ts: datetime
    decided_at: datetime
    interval_key: str
    sequence: int
    verdicts: Sequence[Verdict]
    outcome: DecisionOutcome
    #: the price the decision was made at (the intent's ``decision_price``)
    decision_price: Decimal | None = None
    #: the deciding strategy's code version and config hash (the intent's)
    strategy_version: str | None = None
    config_hash: str | None = None
    #: the stage it was decided in and the capital fraction its size was scaled by
    stage: str | None = None
    capital_fraction: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    """Everything the reserve transaction writes for one order intent."""

    decision: DecisionRecord
    client_order_id: ClientOrderId
    venue: VenueName
    type: OrderType
    time_in_force: TimeInForce
    quantity: Decimal  # after any resize
    limit_price: Decimal | None
    expires_at: datetime


class ReserveStatus(StrEnum):
    RESERVED = "reserved"  #: new order row inserted in PENDING_SUBMIT
    EXISTING = "existing"  #: the client order id was already reserved: continue from ``order``
    BLOCKED = "blocked"  #: an active control covers it; the decision was recorded as denied


@dataclass(frozen=True, slots=True, kw_only=True)
class ReserveResult:
    client_order_id: ClientOrderId
    status: ReserveStatus
    order: Order | None
    #: for BLOCKED: the control(s) that refused it, human readable
    blocked_by: Sequence[str] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Control:
    id: int
    scope: ControlScope
    #: the account it covers; ``None`` only for a global control (every account)
    account: str | None
    #: the account / strategy / symbol the control covers ("*" for global)
    target: str
    kind: ControlKind
    active: bool
    reason: str
    set_by: str
    set_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Incident:
    id: int
    opened_at: datetime
    #: the account whose engine opened it
    account: str
    kind: str
    scope: str
    severity: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    resolved_at: datetime | None = None
    resolution_note: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceBaseline:
    """The venue's total of an asset at the last reconcile that agreed with the ledger, and the
    newest ``fills.id`` that total already contained."""

    asset: str
    total: Decimal
    fill_id: int
    taken_at: datetime


class OperatorRequestKind(StrEnum):
    RECONCILE = "reconcile"  #: `tradectl reconcile`
    CANCEL_ALL = "cancel_all"  #: `tradectl cancel-all`
    RELEASE = "release"  #: `tradectl release`: the graceful hand-off (engine/handoff.py)


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorRequest:
    """A row of ``operator_requests``: an operation asked for from another process."""

    id: int
    account: str
    kind: OperatorRequestKind
    requested_by: str
    reason: str
    params: dict[str, Any] = field(default_factory=dict)
    requested_at: datetime
    handled_at: datetime | None = None
    handled_by: str | None = None
    result: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Operator:
    """Who acts and why: the operator journal row written with the change it records."""

    #: the OS user, or the name given with ``--by``
    actor: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorAction:
    """A row of ``operator_actions`` (and, for a queued operation, its request's state)."""

    id: int
    account: str
    acted_at: datetime
    actor: str
    action: str
    scope: ControlScope
    strategy: str | None
    symbol: str | None
    reason: str
    outcome: str
    details: dict[str, Any] = field(default_factory=dict)
    request_id: int | None = None
    #: the queued request's handling, read from operator_requests
    request_handled_at: datetime | None = None
    request_result: dict[str, Any] | None = None

    @property
    def target(self) -> str:
        """The scope in words: ``account``, ``global``, ``strategy sma-btc``, ``symbol BTCUSDT``."""
        if self.scope is ControlScope.STRATEGY:
            return f"strategy {self.strategy}"
        if self.scope is ControlScope.SYMBOL:
            return f"symbol {self.symbol}"
        return self.scope.value


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseInfo:
    holder: str
    epoch: int
    heartbeat_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalFills:
    """Fills on one symbol that none of the account's orders placed (a trade made by hand)."""

    symbol: Symbol
    trades: int
    #: the newest of them (``fills.id``): the reconciler reports each fill once
    last_fill_id: int
    #: bought minus sold, in the base asset
    net_qty: Decimal
    #: the first trade ids, for the operator
    trade_ids: tuple[TradeId, ...]
