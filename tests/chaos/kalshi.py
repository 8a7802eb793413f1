"""Kalshi seeds of the chaos suite: the same lives, kills and invariants as Binance's, against
the Kalshi-protocol simulator (engine/venues/kalshi_simulator), plus what a prediction market
adds.

Per seed, from ``random.Random(seed)`` after the lives are planned: the read lag, when the
settling market (:data:`SETTLING`) closes and settles and to which result (a seeded number of
market steps after our first order on it, so that it settles with positions, NO ones included;
if the lives ended first, while the engine is down before the final life), and whether and when
a maintenance window (new orders refused, cancels allowed) opens, counted from our first order.
Counting from orders, not from the start, keeps the script meaningful however long startups take
on a loaded machine. The
other market (:data:`TRADING`) trades to the end. The engine runs as ``TRADECTL_VENUE=kalshi``
pointed at the simulator (``TRADECTL_KALSHI_REST_URL`` / ``…_WS_URL``, the simulator's test key
in a 0600 file). Besides Binance's invariants: the ledger's settlements are the venue's (result,
payout, the position settled) and the venue's cash moved by exactly the ledger's fills and
payouts.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from sqlalchemy.engine import URL

from engine.domain.types import VenueOrderStatus
from engine.venues.kalshi_simulator import (
    KalshiSimConfig,
    KalshiSimHandle,
    KalshiSimState,
    MarketSpec,
    run_kalshi_simulator,
)
from engine.venues.kalshi_simulator.server import write_key
from engine.venues.simulator import FaultPlan
from tests.chaos import invariants
from tests.chaos.harness import (
    ACCOUNT,
    PREFIX,
    RESOURCES,
    ChaosVenue,
    SeedOutcome,
    base_env,
)

STRATEGIES_FILE = RESOURCES / "kalshi_strategies.toml"
FAULTS_FILE = RESOURCES / "kalshi_faults.toml"
#: closes and settles mid-run
SETTLING = "KXCHAOS-26DEC31-S"
#: trades until the end
TRADING = "KXCHAOS-26DEC31-T"
USD = "USD"
_CENT = Decimal("0.01")
#: shown sizes of the touch, so a far-touch order of the strategies fills whole or in part
SIZES = (Decimal(3), Decimal(8), Decimal(50))
READ_LAGS = (0.0, 0.3, 0.8, 1.5)


@dataclass(slots=True, kw_only=True)
class KalshiScript:
    """What happens to the markets during one seed, in market steps (0.25 s each) counted from
    the first order of ours on the market (the settlement) or on any market (maintenance)."""

    read_lag_s: float
    settle_step: int
    result: str
    #: the maintenance window's first and last step (``None``: no window this seed)
    maintenance: tuple[int, int] | None
    walk: random.Random = field(repr=False)

    @classmethod
    def draw(cls, rng: random.Random) -> KalshiScript:
        read_lag = rng.choice(READ_LAGS)
        settle_step = rng.randint(8, 60)
        result = rng.choice(("yes", "no"))
        maintenance = None
        if rng.random() < 0.6:
            start = rng.randint(2, 60)
            maintenance = (start, start + rng.randint(4, 16))
        return cls(
            read_lag_s=read_lag,
            settle_step=settle_step,
            result=result,
            maintenance=maintenance,
            walk=random.Random(rng.getrandbits(64)),
        )


class KalshiChaosVenue(ChaosVenue):
    def __init__(self, sim: KalshiSimHandle, script: KalshiScript, key_path: Path) -> None:
        self.sim = sim
        self.script = script
        self.key_path = key_path
        #: market steps since our first order on any market, and on the settling one
        self.steps = 0
        self.settling_steps = 0
        self.maintenance_windows = 0
        self.settled_while_down = False
        #: the account held NO contracts (a negative position) at some market step
        self.held_no = False

    @property
    def state(self) -> KalshiSimState:
        return self.sim.state

    def engine_env(self, database_url: URL, crash_point: str | None) -> dict[str, str]:
        env = base_env(database_url, crash_point)
        env.update(
            {
                "TRADECTL_VENUE": "kalshi",
                "TRADECTL_KALSHI_REST_URL": self.sim.rest_url,
                "TRADECTL_KALSHI_WS_URL": self.sim.ws_url,
                "TRADECTL_KALSHI_KEY_ID": self.sim.key_id,
                "TRADECTL_KALSHI_PRIVATE_KEY_PATH": str(self.key_path),
                "TRADECTL_STRATEGIES_FILE": str(STRATEGIES_FILE),
            }
        )
        return env

    def step(self) -> None:
        state, script = self.state, self.script
        orders = state.core.orders.values()
        if self.steps or orders:
            self.steps += 1
        if self.settling_steps or any(o.symbol == SETTLING for o in orders):
            self.settling_steps += 1
        self.held_no = self.held_no or any(state.position(t) < 0 for t in state.markets)
        if self.settling_steps == script.settle_step and state.status[SETTLING] == "active":
            state.settle_market(SETTLING, script.result)
        if script.maintenance is not None:
            start, end = script.maintenance
            if self.steps == start:
                state.maintenance = True
                self.maintenance_windows += 1
            elif self.steps == end:
                state.maintenance = False
        for ticker, spec in state.markets.items():
            if state.status[ticker] != "active":
                continue
            # a one-cent walk pulled back towards the opening touch: it crosses the
            # strategies' resting orders both ways
            touch = state.core.touch[ticker]
            walk = script.walk
            pull = (spec.bid > touch.bid) - (spec.bid < touch.bid)
            step = _CENT * (walk.choice((-1, 0, 1)) + (pull if walk.random() < 0.3 else 0))
            bid = min(max(touch.bid + step, _CENT), Decimal("0.97"))
            state.set_quote(ticker, bid=bid, ask=bid + 2 * _CENT, size=walk.choice(SIZES))

    async def quiet(self) -> None:
        self.state.faults.set_plan(FaultPlan())
        self.state.maintenance = False
        if self.state.status[SETTLING] == "active":
            # the lives ended before the settling step: the market settles while the engine is
            # down, and the final life's startup must find it
            self.state.settle_market(SETTLING, self.script.result)
            self.settled_while_down = True

    async def observe(self, database_url: URL) -> invariants.World:
        ledger_orders, ledger_fills, positions, incidents = await invariants.ledger_view(
            database_url, ACCOUNT
        )
        settled = await invariants.ledger_settlements(database_url, ACCOUNT)
        return venue_world(self.state, prefix=PREFIX).with_ledger(
            ledger_orders, ledger_fills, positions, incidents, settled
        )

    def record(self, outcome: SeedOutcome, workdir: Path) -> None:
        state = self.state
        truth = state.ground_truth() | {"script": repr(self.script)}
        (workdir / "venue.json").write_text(json.dumps(truth, indent=1), "utf-8")
        outcome.fault_counts = dict(state.fault_counts())
        if state.config.read_lag_s:
            outcome.fault_counts["read_lag"] = 1
        if self.maintenance_windows:
            outcome.fault_counts["maintenance_window"] = self.maintenance_windows
        if self.settled_while_down:
            outcome.fault_counts["settled_while_down"] = 1
        if self.held_no:
            outcome.fault_counts["held_no_position"] = 1
        settled_no = sum(1 for row in state.settlements if Decimal(row["no_count_fp"]) > 0)
        if settled_no:
            outcome.fault_counts["settled_no_contracts"] = settled_no
        outcome.venue_orders = len(state.core.orders)
        outcome.venue_trades = len(state.core.fill_log)
        outcome.settlements = len(state.settlements)


@dataclass(frozen=True, slots=True)
class _VenueWorld:
    """The venue's half of a :class:`invariants.World`, completed with the ledger's."""

    prefix: str
    orders: list[invariants.VenueOrder]
    trades: list[invariants.Trade]
    bases: dict[str, str]
    base_change: dict[str, Decimal]
    settlements: list[invariants.Settlement]
    initial: dict[str, Decimal]
    quote_change: Decimal

    def with_ledger(
        self,
        ledger_orders: list[invariants.LedgerOrder],
        ledger_fills: list[invariants.Trade],
        positions: dict[str, Decimal],
        incidents: list[invariants.Incident],
        settled: list[invariants.Settlement],
    ) -> invariants.World:
        return invariants.World(
            prefix=self.prefix,
            venue_orders=self.orders,
            venue_trades=self.trades,
            base_assets=self.bases,
            base_change=self.base_change,
            ledger_orders=ledger_orders,
            ledger_fills=ledger_fills,
            ledger_positions=positions,
            open_incidents=incidents,
            settles=True,
            venue_settlements=self.settlements,
            ledger_settlements=settled,
            initial_holdings=self.initial,
            quote_asset=USD,
            quote_change=self.quote_change,
        )


def venue_world(state: KalshiSimState, *, prefix: str) -> _VenueWorld:
    """The simulator's ground truth: every order (its UUID), every fill (its fill id), the
    settlements, and how each market's holding and the cash moved. A settled market's change
    is what the account held when it settled (its contracts have left the account since)."""
    orders = [
        invariants.VenueOrder(
            order_id=state.uuid_of(o),
            client_order_id=o.client_order_id,
            symbol=o.symbol,
            status=VenueOrderStatus(o.status.value),
            executed_qty=o.filled,
        )
        for o in state.core.orders.values()
    ]
    trades = [
        invariants.Trade(
            symbol=f.symbol,
            trade_id=state.fill_id(f),
            side=f.side.value,
            qty=f.quantity,
            price=f.price,
            fee=f.fee,
            client_order_id=f.client_order_id,
            venue_order_id=state.order_uuid[f.order_id],
        )
        for f in state.core.fill_log
    ]
    initial = {t: state.config.contracts_of(m) for t, m in state.markets.items()}
    settlements = [
        invariants.Settlement(
            symbol=row["ticker"],
            result=row["market_result"],
            payout=Decimal(row["value"]) / 100,
            count=Decimal(row["yes_count_fp"]) - Decimal(row["no_count_fp"]),
        )
        for row in state.settlements
    ]
    held = {t: state.position(t) for t in state.markets}
    held |= {s.symbol: s.count for s in settlements if s.count is not None}
    change = {t: held[t] - initial[t] for t in state.markets}
    cash = state.core.balances[USD]
    return _VenueWorld(
        prefix=prefix,
        orders=orders,
        trades=trades,
        bases={t: t for t in state.markets},
        base_change=change,
        settlements=settlements,
        initial=initial,
        quote_change=cash.free + cash.locked - state.config.cash,
    )


class KalshiKind:
    name = "kalshi"
    faults_file = FAULTS_FILE

    @contextlib.asynccontextmanager
    async def open(
        self, seed: int, plan: FaultPlan, rng: random.Random
    ) -> AsyncIterator[ChaosVenue]:
        script = KalshiScript.draw(rng)
        config = KalshiSimConfig(
            seed=seed,
            markets=(
                # nothing held at start: a strategy going short there holds NO when it settles
                MarketSpec(ticker=SETTLING, size=SIZES[1], contracts=Decimal(0)),
                MarketSpec(ticker=TRADING, bid=Decimal("0.60"), ask=Decimal("0.62"), size=SIZES[1]),
            ),
            read_lag_s=script.read_lag_s,
            faults=plan,
        )
        async with run_kalshi_simulator(config) as sim:
            # the test key in a 0600 file, which every engine process of the seed reads
            key_path = write_key(sim.private_key_pem)
            try:
                yield KalshiChaosVenue(sim, script, key_path)
            finally:
                shutil.rmtree(key_path.parent, ignore_errors=True)


KALSHI = KalshiKind()
