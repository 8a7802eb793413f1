"""Settings of the Kalshi-protocol simulator: its markets, the account, the fees, read lag and
faults. Faults reuse the Binance simulator's seeded plan (``latency``, ``drop_response``,
``http_5xx``, ``rate_limit_429`` - answered Kalshi's way, without ``Retry-After`` -,
``ws_disconnect_user``, and ``duplicate_execution_report`` / ``reorder_execution_report`` for
``fill`` and ``user_order`` messages sent twice or after the next one); read lag and the 409 on
a duplicate open client order id are the venue's own behaviour, not faults."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

from engine.domain.types import Liquidity
from engine.exceptions import ConfigError
from engine.venues.kalshi.ratelimit import Tier
from engine.venues.simulator.faults import FaultPlan

DEFAULT_KEY_ID = "sim-kalshi-key"
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketSpec:
    """One binary market on a one-cent grid (``price_ranges`` 0..1 step 0.01)."""

    ticker: str
    bid: Decimal = Decimal("0.45")
    ask: Decimal = Decimal("0.47")
    size: Decimal = Decimal("500")
    event_ticker: str = "SIM-EVENT"
    close_time: str = "2099-01-01T00:00:00Z"
    #: YES contracts the account holds at start (``None``: the config's ``contracts``)
    contracts: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KalshiFees:
    """Quadratic fees: ``rate * C * P * (1 - P)`` rounded up to the cent per fill (taker about
    0.07, maker a fraction). Charged from free cash at the fill: a buy locks only its price."""

    taker: Decimal = Decimal("0.07")
    maker: Decimal = Decimal("0.0175")

    def fee(
        self, *, quantity: Decimal, price: Decimal, liquidity: Liquidity, in_quote: bool
    ) -> Decimal:
        rate = self.taker if liquidity is Liquidity.TAKER else self.maker
        raw = rate * quantity * price * (1 - price)
        return raw.quantize(_CENT, rounding=ROUND_CEILING)

    def buy_reserve_per_unit(self, price: Decimal) -> Decimal:
        return price


@dataclass(frozen=True, slots=True, kw_only=True)
class KalshiSimConfig:
    seed: int = 7
    key_id: str = DEFAULT_KEY_ID
    markets: tuple[MarketSpec, ...] = (MarketSpec(ticker="KXSIM-26DEC31-T50"),)
    #: starting cash in dollars, and YES contracts held per market; selling YES beyond them
    #: opens a NO position (its NO price paid from cash), as on Kalshi
    cash: Decimal = Decimal("10000")
    contracts: Decimal = Decimal("1000")
    fees: KalshiFees = field(default_factory=KalshiFees)
    #: orders and fills stay invisible to reads this long after the write
    read_lag_s: float = 0.0
    #: how far a request's timestamp may be from the simulator's clock
    max_skew_s: float = 30.0
    #: the account's read/write token buckets; ``None`` enforces none (a 429 is then only a
    #: fault). Most requests cost 10 tokens, a cancel 2, as on the venue.
    tier: Tier | None = None
    faults: FaultPlan = field(default_factory=FaultPlan)

    def contracts_of(self, market: MarketSpec) -> Decimal:
        return self.contracts if market.contracts is None else market.contracts

    def __post_init__(self) -> None:
        if self.read_lag_s < 0:
            raise ConfigError("kalshi simulator read_lag_s must be >= 0")
        if not self.markets:
            raise ConfigError("kalshi simulator needs at least one market")
