"""What a strategy decides: Buy / Sell / Cancel / Hold.

Every intent carries the reason, the timestamp of the market data it was decided on (``md_ts``)
and a :class:`DecisionKey`. The key is what makes a decision idempotent: the same market-data
interval must produce the same key after a restart, and the client order id is derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from engine.domain.records import replacer
from engine.domain.types import (
    ClientOrderId,
    OrderType,
    Side,
    StrategyId,
    Symbol,
    TimeInForce,
    require_aware,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionKey:
    """``(strategy_id, symbol, interval_key, side, sequence)``.

    ``interval_key`` names the market-data window the decision was made in (e.g. the bar's open time
    ``"2026-11-22T10:05"``), never the wall clock at retry time. ``sequence`` distinguishes several
    decisions inside one window. ``side`` is ``None`` for holds and cancels.
    """

    strategy_id: StrategyId
    symbol: Symbol
    interval_key: str
    side: Side | None
    sequence: int = 0

    def __post_init__(self) -> None:
        if not self.strategy_id or not self.symbol or not self.interval_key:
            raise ValueError(f"decision key fields must be non-empty: {self!r}")
        if self.sequence < 0:
            raise ValueError(f"decision key sequence must be >= 0, got {self.sequence}")

    @classmethod
    def of(
        cls,
        strategy_id: StrategyId,
        symbol: Symbol,
        interval_key: str,
        side: Side | None,
        sequence: int,
    ) -> DecisionKey:
        """``DecisionKey(...)`` in half the time (a strategy builds one on every bar): the
        same checks, without the generated ``__init__``'s keyword parsing and frozen writes."""
        if not strategy_id or not symbol or not interval_key or sequence < 0:
            return cls(  # raises, with the constructor's message
                strategy_id=strategy_id,
                symbol=symbol,
                interval_key=interval_key,
                side=side,
                sequence=sequence,
            )
        key = _new(cls)
        _SET_KEY_STRATEGY_ID(key, strategy_id)
        _SET_KEY_SYMBOL(key, symbol)
        _SET_KEY_INTERVAL_KEY(key, interval_key)
        _SET_KEY_SIDE(key, side)
        _SET_KEY_SEQUENCE(key, sequence)
        return key

    def canonical(self) -> str:
        """The stable text form hashed into ids; changing it changes every id."""
        side = self.side.value if self.side is not None else "-"
        return "|".join(
            (self.strategy_id, self.symbol, self.interval_key, side, str(self.sequence))
        )


_new = object.__new__
if tuple(f.name for f in fields(DecisionKey)) != (
    "strategy_id",
    "symbol",
    "interval_key",
    "side",
    "sequence",
):
    raise RuntimeError("DecisionKey's fields changed: update DecisionKey.of")
(
    _SET_KEY_STRATEGY_ID,
    _SET_KEY_SYMBOL,
    _SET_KEY_INTERVAL_KEY,
    _SET_KEY_SIDE,
    _SET_KEY_SEQUENCE,
) = (
    DecisionKey.__dict__[name].__set__
    for name in ("strategy_id", "symbol", "interval_key", "side", "sequence")
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Intent:
    key: DecisionKey
    reason: str
    md_ts: datetime
    #: the code version of the strategy that decided, and a hash of its config: filled in by the
    #: strategy host from the config (chapter 19.11.3), recorded with the decision
    strategy_version: str | None = None
    config_hash: str | None = None
    #: the stage it was decided in and the capital fraction applied to its size
    #: (engine/domain/stage.py), filled in by the strategy host, recorded with the decision
    stage: str | None = None
    capital_fraction: Decimal | None = None

    def __post_init__(self) -> None:
        if self.md_ts.tzinfo is not UTC:  # UTC itself is aware: the usual case, checked quickly
            require_aware(self.md_ts, "md_ts")
        if not self.reason:
            raise ValueError("an intent needs a reason")

    @property
    def strategy_id(self) -> StrategyId:
        return self.key.strategy_id

    @property
    def symbol(self) -> Symbol:
        return self.key.symbol


@dataclass(frozen=True, slots=True, kw_only=True)
class _OrderIntent(_Intent):
    quantity: Decimal
    #: ``None`` means a market order.
    limit_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    #: How long the intent stays valid: an order not known to be placed after this is not resent.
    ttl: timedelta = timedelta(seconds=30)
    #: The price the decision was made at, what execution quality is measured against: the
    #: strategy's target price, or (left ``None`` by the strategy) the mid of the quote it saw,
    #: which the strategy host fills in (:func:`with_decision_price`).
    decision_price: Decimal | None = None

    def __post_init__(self) -> None:
        _Intent.__post_init__(self)
        if not isinstance(self.quantity, Decimal) or not self.quantity.is_finite():
            raise ValueError(f"quantity must be a finite Decimal, got {self.quantity!r}")
        if self.quantity <= 0:
            raise ValueError(f"quantity must be positive, got {self.quantity}")
        if self.limit_price is not None and (
            not isinstance(self.limit_price, Decimal)
            or not self.limit_price.is_finite()
            or self.limit_price <= 0
        ):
            raise ValueError(f"limit_price must be a positive Decimal, got {self.limit_price!r}")
        if self.decision_price is not None and (
            not isinstance(self.decision_price, Decimal)
            or not self.decision_price.is_finite()
            or self.decision_price < 0
        ):
            raise ValueError(
                f"decision_price must be a finite Decimal >= 0, got {self.decision_price!r}"
            )
        if self.key.side is not self.side:
            raise ValueError(f"decision key side {self.key.side} does not match {self.side}")

    @property
    def side(self) -> Side:
        raise NotImplementedError

    @property
    def order_type(self) -> OrderType:
        return OrderType.MARKET if self.limit_price is None else OrderType.LIMIT


@dataclass(frozen=True, slots=True, kw_only=True)
class Buy(_OrderIntent):
    @property
    def side(self) -> Side:
        return Side.BUY


@dataclass(frozen=True, slots=True, kw_only=True)
class Sell(_OrderIntent):
    @property
    def side(self) -> Side:
        return Side.SELL


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel(_Intent):
    client_order_id: ClientOrderId


@dataclass(frozen=True, slots=True, kw_only=True)
class Hold(_Intent):
    """The strategy looked and chose to do nothing; recorded so "why no trade?" has an answer."""

    @classmethod
    def of(cls, key: DecisionKey, reason: str, md_ts: datetime) -> Hold:
        """``Hold(key=..., reason=..., md_ts=...)`` in a third of the time (most strategies
        hold on most bars, so a backtest builds one per bar): the same checks, without the
        generated ``__init__``'s keyword parsing and a frozen write per field."""
        if md_ts.tzinfo is not UTC or not reason:
            return cls(key=key, reason=reason, md_ts=md_ts)  # checks, raises as the constructor
        hold = _new(cls)
        _SET_HOLD_KEY(hold, key)
        _SET_HOLD_REASON(hold, reason)
        _SET_HOLD_MD_TS(hold, md_ts)
        _SET_HOLD_STRATEGY_VERSION(hold, None)
        _SET_HOLD_CONFIG_HASH(hold, None)
        _SET_HOLD_STAGE(hold, None)
        _SET_HOLD_CAPITAL_FRACTION(hold, None)
        return hold


_HOLD_FIELDS = (
    "key",
    "reason",
    "md_ts",
    "strategy_version",
    "config_hash",
    "stage",
    "capital_fraction",
)
if tuple(f.name for f in fields(Hold)) != _HOLD_FIELDS:
    raise RuntimeError("Hold's fields changed: update Hold.of")
(
    _SET_HOLD_KEY,
    _SET_HOLD_REASON,
    _SET_HOLD_MD_TS,
    _SET_HOLD_STRATEGY_VERSION,
    _SET_HOLD_CONFIG_HASH,
    _SET_HOLD_STAGE,
    _SET_HOLD_CAPITAL_FRACTION,
) = (_Intent.__dict__[name].__set__ for name in _HOLD_FIELDS)


OrderIntent = Buy | Sell
Intent = Buy | Sell | Cancel | Hold


def with_decision_price(intent: Intent, price: Decimal | None) -> Intent:
    """``intent`` with ``price`` as its decision price, unless it is not an order or already
    has one (a strategy's own target price wins over the mid it saw)."""
    if not isinstance(intent, Buy | Sell) or intent.decision_price is not None or price is None:
        return intent
    if type(price) is Decimal and price.is_finite() and price >= 0:  # what the order checks
        return replacer(type(intent))(intent, decision_price=price)
    return replace(intent, decision_price=price)  # raises, as the constructor


def intent_kind(intent: Intent) -> str:
    """The stored name of an intent's kind: ``buy`` / ``sell`` / ``cancel`` / ``hold``."""
    return type(intent).__name__.lower()


def interval_key_of(at: datetime) -> str:
    """``at.isoformat()``: the key every decision of a bar strategy carries (client order ids
    derive from it, so its text never changes). A whole second in UTC, the usual bar open, is
    formatted from its fields: three times quicker than ``isoformat`` on an aware datetime,
    which a backtest paid on every bar. The date part is kept from the previous call while the
    day is the same (consecutive bars: a quarter less again)."""
    global _last_day
    if at.tzinfo is UTC and not at.microsecond:
        day, prefix = _last_day  # one tuple, replaced whole: a consistent pair in any thread
        ordinal = at.toordinal()
        if ordinal != day:
            prefix = "%04d-%02d-%02dT" % (at.year, at.month, at.day)  # noqa: UP031
            _last_day = (ordinal, prefix)
        return "%s%02d:%02d:%02d+00:00" % (  # noqa: UP031 (quicker than f-specs)
            prefix,
            at.hour,
            at.minute,
            at.second,
        )
    return at.isoformat()


#: the ordinal of the last UTC day :func:`interval_key_of` formatted, and its text
_last_day: tuple[int, str] = (0, "")
