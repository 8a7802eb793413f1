"""The pnl, current_balances and execution_quality views agree with the domain's position math
(engine/domain/positions.py) on a recorded sequence of fills written through the real ledger:
a partial close, a flip through zero, fees in the base, quote and a third asset, and a
prediction-market contract that settles."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.positions import (
    Position,
    PositionFill,
    position_from_fills,
    settle,
    unrealized,
)
from engine.domain.types import (
    AccountId,
    Asset,
    ClientOrderId,
    DecisionId,
    DecisionOutcome,
    Liquidity,
    OrderType,
    Side,
    StrategyId,
    Symbol,
    TimeInForce,
    TradeId,
    VenueName,
    VenueOrderId,
    VenueOrderStatus,
)
from engine.ledger.ledger import Ledger
from engine.ledger.pnl import pnl_rows
from engine.ledger.records import DecisionRecord, Reservation, ReserveStatus
from engine.ledger.statements import from_json
from engine.venues.base import BalanceReport, FillReport, InstrumentRules, OrderReport

ACCOUNT = AccountId("acct-pnl")
VENUE = VenueName("binance")
HOLDER = "engine-pnl"
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
BTC = Symbol("BTCUSDT")
MARKET = Symbol("RAIN-26DEC01")  # a binary contract: pays 1 USD if it rains, else 0


@dataclass(frozen=True)
class Step:
    """One decision, its order and the order's one fill."""

    strategy: str
    symbol: Symbol
    side: Side
    qty: str
    price: str
    fee: str
    fee_asset: str
    decision_price: str
    order_type: OrderType = OrderType.LIMIT


# The recorded sequence, in venue order. momo's BTC position: long 0.5 (fee in BTC), adds 0.3,
# closes 0.2 in part, sells 1 (through zero to short 0.4005), buys 0.401 (through zero again,
# to long 0.0005): every branch of the average-cost fold. fv buys and sells a binary contract that
# then settles at 1.
SEQUENCE = (
    Step("momo", BTC, Side.BUY, "0.5", "30000", "0.0005", "BTC", "29990"),
    Step("momo", BTC, Side.BUY, "0.3", "31000", "1.2", "USDT", "31010"),
    Step("momo", BTC, Side.SELL, "0.2", "32000", "0.64", "USDT", "32005.5"),
    Step("momo", BTC, Side.SELL, "1", "29000", "0.5", "BNB", "29100", OrderType.MARKET),
    Step("momo", BTC, Side.BUY, "0.401", "28000", "0.01", "USDT", "27990"),
    Step("fv", MARKET, Side.BUY, "100", "0.42", "0.7", "USD", "0.415"),
    Step("fv", MARKET, Side.SELL, "30", "0.55", "0.3", "USD", "0.555"),
    Step("fv", MARKET, Side.BUY, "7", "0.61", "0", "USD", "0.6"),
)
ASSETS = {BTC: (Asset("BTC"), Asset("USDT")), MARKET: (Asset("RAIN"), Asset("USD"))}
BASELINE = {"BTC": Decimal(2), "USDT": Decimal(100000), "BNB": Decimal(10), "USD": Decimal(500)}


TWELVE = Decimal("1e-12")


def _at(n: int) -> datetime:
    return T0 + timedelta(seconds=10 * n)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(db_engine: AsyncEngine, clock: Clock) -> Ledger:
    return Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=clock)


def _rules(symbol: Symbol) -> InstrumentRules:
    base, quote = ASSETS[symbol]
    step = Decimal("0.0001") if symbol == BTC else Decimal(1)
    return InstrumentRules(
        symbol=symbol,
        base_asset=base,
        quote_asset=quote,
        tick_size=Decimal("0.01"),
        step_size=step,
        min_qty=step,
        max_qty=Decimal(1000),
    )


async def _record(ledger: Ledger, clock: Clock, epoch: int, n: int, step: Step) -> None:
    """Decide at _at(n), ack 20 ms later, fill 50 ms after the decision."""
    decided = _at(n)
    clock.now = decided
    decision = DecisionRecord(
        decision_id=DecisionId(f"d-{n}"),
        strategy_id=StrategyId(step.strategy),
        account=ACCOUNT,
        symbol=step.symbol,
        intent=step.side.value.lower(),
        side=step.side,
        quantity=Decimal(step.qty),
        limit_price=None if step.order_type is OrderType.MARKET else Decimal(step.price),
        reason="recorded sequence",
        md_ts=decided - timedelta(milliseconds=5),
        decided_at=decided,
        interval_key=f"k{n}",
        sequence=0,
        verdicts=(),
        outcome=DecisionOutcome.RESERVED,
        decision_price=Decimal(step.decision_price),
    )
    coid = ClientOrderId(f"c-{n}")
    [reserved] = await ledger.orders.reserve(
        [
            Reservation(
                decision=decision,
                client_order_id=coid,
                venue=VENUE,
                type=step.order_type,
                time_in_force=TimeInForce.GTC,
                quantity=Decimal(step.qty),
                limit_price=decision.limit_price,
                expires_at=decided + timedelta(seconds=30),
            )
        ],
        holder=HOLDER,
        epoch=epoch,
    )
    assert reserved.status is ReserveStatus.RESERVED
    clock.now = decided + timedelta(milliseconds=20)
    await ledger.orders.record_ack(
        coid,
        OrderReport(
            venue=VENUE,
            symbol=step.symbol,
            client_order_id=coid,
            venue_order_id=VenueOrderId(f"v-{n}"),
            side=step.side,
            type=step.order_type,
            status=VenueOrderStatus.NEW,
            quantity=Decimal(step.qty),
            limit_price=decision.limit_price,
            filled_quantity=Decimal(0),
            cumulative_quote=None,
            venue_ts=clock.now,
            received_at=clock.now,
        ),
        submitted_at=decided + timedelta(milliseconds=10),
    )
    clock.now = decided + timedelta(milliseconds=50)
    await ledger.fills.append([_fill(n, step, coid, clock.now)])


def _fill(n: int, step: Step, coid: ClientOrderId, at: datetime) -> FillReport:
    return FillReport(
        venue=VENUE,
        symbol=step.symbol,
        trade_id=TradeId(f"t-{n}"),
        client_order_id=coid,
        venue_order_id=VenueOrderId(f"v-{n}"),
        side=step.side,
        quantity=Decimal(step.qty),
        price=Decimal(step.price),
        fee=Decimal(step.fee),
        fee_asset=Asset(step.fee_asset),
        liquidity=Liquidity.TAKER,
        venue_ts=at,
        received_at=at,
    )


def _domain(strategy: str, symbol: Symbol) -> Position:
    base, quote = ASSETS[symbol]
    return position_from_fills(
        (
            PositionFill(
                side=s.side,
                qty=Decimal(s.qty),
                price=Decimal(s.price),
                fee=Decimal(s.fee),
                fee_asset=Asset(s.fee_asset),
            )
            for s in SEQUENCE
            if s.strategy == strategy and s.symbol == symbol
        ),
        base_asset=base,
        quote_asset=quote,
        symbol=symbol,
    )


async def _rows(engine: AsyncEngine, sql: str, **params: Any) -> dict[Any, Any]:
    async with engine.connect() as conn:
        return {r["key"]: r for r in (await conn.execute(text(sql), params)).mappings().all()}


@pytest.fixture
async def recorded(ledger: Ledger, clock: Clock) -> Ledger:
    await record_sequence(ledger, clock)
    return ledger


async def record_sequence(ledger: Ledger, clock: Clock) -> None:
    """Write SEQUENCE through the ledger: instruments, baselines, decisions, orders, fills."""
    epoch = await ledger.leases.acquire(HOLDER, timedelta(minutes=5))
    assert epoch is not None
    for symbol in ASSETS:
        await ledger.balances.upsert_instrument(_rules(symbol))
    await ledger.balances.save_baselines(BASELINE, fill_id=0)
    for n, step in enumerate(SEQUENCE):
        await _record(ledger, clock, epoch, n, step)


async def test_pnl_view_agrees_with_the_domain_fold_through_a_flip_and_a_settlement(
    recorded: Ledger, clock: Clock, db_engine: AsyncEngine
) -> None:
    # a mid recorded after the last fill is the mark; the market settles (rained: pays 1)
    clock.now = _at(20)
    await recorded.marks.record({BTC: Decimal("28123.45")})
    assert await recorded.settlements.record(
        MARKET, result="yes", payout=Decimal(1), settled_at=_at(21)
    )
    assert not await recorded.settlements.record(
        MARKET, result="yes", payout=Decimal(1), settled_at=_at(21)
    )

    rows = await _rows(
        db_engine,
        "SELECT strategy_id || ' ' || symbol AS key, * FROM pnl WHERE account = :a",
        a=ACCOUNT,
    )
    assert set(rows) == {"momo BTCUSDT", "fv RAIN-26DEC01"}

    btc = _domain("momo", BTC)
    row = rows["momo BTCUSDT"]
    assert row["position"] == btc.quantity == Decimal("0.0005")
    assert row["cost_basis"] == btc.cost_basis
    assert row["avg_cost"] == btc.avg_entry_price
    assert row["realized"] == btc.realized_pnl
    assert (row["mark"], row["mark_source"]) == (Decimal("28123.45"), "mid")
    assert row["unrealized"] == unrealized(btc, Decimal("28123.45"))
    assert row["total"] == btc.realized_pnl + unrealized(btc, Decimal("28123.45"))
    # quote fees plus the BTC fee valued at its fill price; BNB is listed, not netted
    assert row["fees"] == btc.quote_fees + Decimal("0.0005") * 30000
    assert row["base_fees"] == btc.base_fees
    assert from_json(row["other_fees"]) == {"BNB": "0.5"}
    assert row["quote_asset"] == "USDT"
    assert row["fill_count"] == 5

    open_contract = _domain("fv", MARKET)
    settled = settle(open_contract, Decimal(1))
    row = rows["fv RAIN-26DEC01"]
    assert open_contract.quantity == 77
    assert (row["position"], row["cost_basis"], row["unrealized"]) == (0, 0, 0)
    assert row["realized"] == settled.realized_pnl
    assert row["total"] == settled.realized_pnl
    assert (row["mark"], row["mark_source"]) == (1, "settlement")
    assert row["settled_at"] == _at(21)

    # positions carries the same average cost
    positions = await _rows(
        db_engine,
        "SELECT strategy_id || ' ' || symbol AS key, * FROM positions WHERE account = :a",
        a=ACCOUNT,
    )
    assert positions["momo BTCUSDT"]["avg_cost"] == btc.avg_entry_price
    # (a repeating decimal: SQL divides to 20 places, the domain to 60)
    assert open_contract.avg_entry_price is not None
    assert positions["fv RAIN-26DEC01"]["avg_cost"].quantize(TWELVE) == (
        open_contract.avg_entry_price.quantize(TWELVE)
    )


async def test_pnl_since_counts_only_what_the_later_fills_realized(
    recorded: Ledger, db_engine: AsyncEngine
) -> None:
    before = position_from_fills(
        (
            PositionFill(
                side=s.side,
                qty=Decimal(s.qty),
                price=Decimal(s.price),
                fee=Decimal(s.fee),
                fee_asset=Asset(s.fee_asset),
            )
            for s in SEQUENCE[:2]
        ),
        base_asset=Asset("BTC"),
        quote_asset=Asset("USDT"),
    )
    btc = _domain("momo", BTC)
    [row] = [r for r in await pnl_rows(db_engine, ACCOUNT, since=_at(2)) if r.symbol == BTC]
    assert row.realized == btc.realized_pnl - before.realized_pnl
    assert row.fees == Decimal("0.64") + Decimal("0.01")
    assert row.position == btc.quantity
    assert (row.mark, row.mark_source) == (Decimal(28000), "last_fill")
    assert row.step_size == Decimal("0.0001")


async def test_current_balances_expect_the_baseline_moved_by_the_domain_cash_flow(
    recorded: Ledger, clock: Clock, db_engine: AsyncEngine
) -> None:
    clock.now = _at(21)
    await recorded.settlements.record(MARKET, result="no", payout=Decimal(0), settled_at=_at(21))
    btc = _domain("momo", BTC)
    contract = settle(_domain("fv", MARKET), Decimal(0))
    # cash flow of a position = realized - cost of what is still open (total P&L at any mark,
    # minus the open quantity's value at it)
    expected = {
        "BTC": BASELINE["BTC"] + btc.quantity,
        "USDT": BASELINE["USDT"] + btc.realized_pnl - btc.cost_basis,
        "BNB": BASELINE["BNB"] - btc.other_fees[Asset("BNB")],
        "USD": BASELINE["USD"] + contract.realized_pnl - contract.cost_basis,
    }
    reported = {"BTC": Decimal("2.0005"), "USDT": expected["USDT"], "BNB": Decimal("9.5")}
    await recorded.balances.record(
        [
            BalanceReport(
                venue=VENUE,
                asset=Asset(asset),
                free=total - 1,
                locked=Decimal(1),
                venue_ts=_at(22),
                received_at=_at(22),
            )
            for asset, total in reported.items()
        ]
    )

    rows = await _rows(
        db_engine, "SELECT asset AS key, * FROM current_balances WHERE account = :a", a=ACCOUNT
    )
    assert {a: r["expected"] for a, r in rows.items()} == expected
    assert rows["BTC"]["total"] == Decimal("2.0005")
    assert rows["BTC"]["difference"] == 0
    assert rows["USDT"]["difference"] == 0
    assert rows["BNB"]["difference"] == 0
    assert rows["USD"]["total"] is None  # no report of USD yet: nothing to compare
    assert rows["USD"]["difference"] is None


async def test_execution_quality_measures_against_the_decision_price(
    recorded: Ledger, clock: Clock, db_engine: AsyncEngine
) -> None:
    # one more decision, to buy 0.1 at 28000, expires unfilled while the mid moves to 28100:
    # its opportunity cost is 0.1 * 100
    epoch = await recorded.leases.acquire(HOLDER, timedelta(minutes=5))
    assert epoch is not None
    clock.now = _at(30)
    missed = Step("momo", BTC, Side.BUY, "0.1", "28000", "0", "USDT", "28000")
    decision = DecisionRecord(
        decision_id=DecisionId("d-missed"),
        strategy_id=StrategyId("momo"),
        account=ACCOUNT,
        symbol=BTC,
        intent="buy",
        side=Side.BUY,
        quantity=Decimal(missed.qty),
        limit_price=Decimal(missed.price),
        reason="recorded sequence",
        md_ts=clock.now,
        decided_at=clock.now,
        interval_key="missed",
        sequence=0,
        verdicts=(),
        outcome=DecisionOutcome.RESERVED,
        decision_price=Decimal(missed.decision_price),
    )
    await recorded.orders.reserve(
        [
            Reservation(
                decision=decision,
                client_order_id=ClientOrderId("c-missed"),
                venue=VENUE,
                type=OrderType.LIMIT,
                time_in_force=TimeInForce.GTC,
                quantity=Decimal(missed.qty),
                limit_price=Decimal(missed.price),
                expires_at=clock.now + timedelta(seconds=30),
            )
        ],
        holder=HOLDER,
        epoch=epoch,
    )
    await recorded.orders.expire(ClientOrderId("c-missed"), "not placed in time")
    await recorded.marks.record({BTC: Decimal(28100)})

    rows = await _rows(
        db_engine,
        "SELECT decision_id AS key, * FROM execution_quality WHERE account = :a",
        a=ACCOUNT,
    )
    assert len(rows) == len(SEQUENCE) + 1
    missed_row = rows["d-missed"]
    assert (missed_row["state"], missed_row["filled_qty"]) == ("EXPIRED", 0)
    assert missed_row["slippage"] is None
    assert missed_row["opportunity_cost"] == Decimal(10)
    assert missed_row["implementation_shortfall"] == Decimal(10)
    assert missed_row["shortfall_bps"].quantize(Decimal("0.01")) == Decimal("35.71")
    first = rows["d-0"]  # buy 0.5 at 30000 decided at 29990: paid 10 more per BTC
    assert first["decision_price"] == Decimal(29990)
    assert first["slippage"] == 10
    assert first["slippage_cost"] == Decimal(5)
    assert first["slippage_bps"].quantize(Decimal("0.0001")) == Decimal("3.3344")
    assert first["fees_quote"] == Decimal("0.0005") * 30000
    assert first["decide_to_ack_s"] == Decimal("0.02")
    assert first["decide_to_first_fill_s"] == Decimal("0.05")
    assert first["fill_ratio"] == 1
    # fully filled: nothing left unfilled, so the shortfall is the slippage and the fees
    assert first["state"] == "FILLED"
    assert first["opportunity_cost"] == 0
    assert first["implementation_shortfall"] == Decimal(5) + Decimal("15")
    market = rows["d-3"]  # a market sell at 29000 decided at 29100: 100 less per BTC
    assert (market["type"], market["slippage"], market["slippage_cost"]) == ("MARKET", 100, 100)
    assert market["implementation_shortfall"] == 100  # the BNB fee is not valued

    summary = await _rows(
        db_engine,
        "SELECT strategy_id AS key, * FROM execution_quality_by_strategy WHERE account = :a",
        a=ACCOUNT,
    )
    momo = summary["momo"]
    assert (momo["orders"], momo["filled_orders"]) == (6, 5)
    assert momo["fill_rate"].quantize(TWELVE) == (Decimal("2.401") / Decimal("2.501")).quantize(
        TWELVE
    )
    assert momo["slippage_cost"] == sum(
        (
            (Decimal(s.price) - Decimal(s.decision_price)) * s.side.sign * Decimal(s.qty)
            for s in SEQUENCE
            if s.strategy == "momo"
        ),
        Decimal(0),
    )
    assert momo["decide_to_ack_p50_s"] == pytest.approx(0.02)
    assert momo["decide_to_fill_p95_s"] == pytest.approx(0.05)


async def test_position_fold_in_sql_equals_the_domain_fold_on_many_seeded_sequences(
    db_engine: AsyncEngine,
) -> None:
    # Partial closes whose cost share does not divide evenly (and so is rounded half to even
    # at 18 places), flips, and fees in every asset, on 300 sequences from a fixed seed.
    rng = random.Random(20261130)
    kinds = {"quote": "USDT", "base": "BTC", "other": "BNB"}
    async with db_engine.connect() as conn:
        for _ in range(300):
            fills = []
            for _ in range(rng.randint(1, 12)):
                kind = rng.choice(["quote", "base", "other", "none"])
                fee = Decimal(0) if kind == "none" else Decimal(rng.randint(1, 999)) / 10**6
                fills.append(
                    PositionFill(
                        side=rng.choice([Side.BUY, Side.SELL]),
                        qty=Decimal(rng.randint(1, 30000)) / 10**4,
                        price=Decimal(rng.randint(1, 10**7)) / 10**2,
                        fee=fee,
                        fee_asset=None if kind == "none" else Asset(kinds[kind]),
                    )
                )
            domain = position_from_fills(fills, base_asset=Asset("BTC"), quote_asset=Asset("USDT"))
            fold = (
                await conn.execute(
                    text(
                        "SELECT position_fold(CAST(:s AS text[]), CAST(:q AS numeric[]), "
                        "CAST(:p AS numeric[]), CAST(:f AS numeric[]), CAST(:k AS text[]))"
                    ),
                    {
                        "s": [f.side.value for f in fills],
                        "q": [f.qty for f in fills],
                        "p": [f.price for f in fills],
                        "f": [f.fee for f in fills],
                        "k": [
                            "none"
                            if f.fee == 0
                            else next(k for k, a in kinds.items() if a == f.fee_asset)
                            for f in fills
                        ],
                    },
                )
            ).scalar_one()
            assert fold == [
                domain.quantity,
                domain.cost_basis,
                domain.realized_pnl,
                domain.quote_fees,
                domain.base_fees,
            ], fills
