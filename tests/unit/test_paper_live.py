"""The paper venue on outside market data: the seeded fill model, the feeds' settings, the
recording format, and the per-trade comparison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.compare.diff import Tolerance, Trade, compare
from engine.domain.market import Bar, Quote
from engine.domain.market import Trade as PublicTrade
from engine.domain.types import (
    ClientOrderId,
    OrderType,
    Side,
    StrategyId,
    Symbol,
    TimeInForce,
    TradeId,
    VenueOrderStatus,
)
from engine.exceptions import ConfigError
from engine.marketdata.recording import MarketRecorder, read_recording
from engine.venues.base import OrderRequest
from engine.venues.paper.feeds import parse_feed, shifted
from engine.venues.paper.fill_model import FillModel
from engine.venues.paper.live import LivePaperVenue, live_paper_venue

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
BTC = Symbol("BTCUSDT")


def _quote(bid: str, ask: str, at: datetime = T0, size: str = "1") -> Quote:
    return Quote(symbol=BTC, bid=Decimal(bid), bid_size=Decimal(size), ask=Decimal(ask),
                 ask_size=Decimal(size), venue_ts=at, received_at=at)  # fmt: skip


def _trade(price: str, qty: str, aggressor: Side | None, n: int = 1) -> PublicTrade:
    return PublicTrade(
        symbol=BTC, trade_id=TradeId(str(n)), price=Decimal(price), quantity=Decimal(qty),
        aggressor=aggressor, venue_ts=T0, received_at=T0,
    )  # fmt: skip


def _venue(**model: Decimal) -> LivePaperVenue:
    return live_paper_venue((BTC,), fill_model=FillModel(**model), clock=lambda: T0)  # type: ignore[arg-type]


def _order(coid: str, side: Side, qty: str, price: str | None) -> OrderRequest:
    return OrderRequest(
        client_order_id=ClientOrderId(coid), symbol=BTC, side=side,
        type=OrderType.MARKET if price is None else OrderType.LIMIT, quantity=Decimal(qty),
        limit_price=None if price is None else Decimal(price), time_in_force=TimeInForce.GTC,
    )  # fmt: skip


async def test_a_resting_bid_fills_by_participation_in_sells_at_or_through_its_price() -> None:
    venue = _venue(participation=Decimal("0.25"))
    venue.apply(_quote("100.00", "100.02"))
    await venue.submit(_order("b1", Side.BUY, "1", "99.99"))
    venue.apply(_trade("100.00", "4", Side.SELL, 1))  # above our bid: not reached
    venue.apply(_trade("99.99", "2", Side.BUY, 2))  # a buyer took: does not hit bids
    venue.apply(_trade("99.99", "2", Side.SELL, 3))  # reaches us: a quarter of 2
    order = await venue.find_order(BTC, ClientOrderId("b1"))
    assert order.filled_quantity == Decimal("0.5")
    assert [f.price for f in order.fills] == [Decimal("99.99")]
    venue.apply(_trade("99.98", "8", Side.SELL, 4))  # through our price: the rest
    order = await venue.find_order(BTC, ClientOrderId("b1"))
    assert order.status is VenueOrderStatus.FILLED


async def test_a_resting_limit_fills_when_the_quote_crosses_it() -> None:
    venue = _venue()
    venue.apply(_quote("100.00", "100.02"))
    await venue.submit(_order("s1", Side.SELL, "0.5", "100.05"))
    venue.apply(_quote("100.06", "100.08"))
    assert (await venue.find_order(BTC, ClientOrderId("s1"))).status is VenueOrderStatus.FILLED


async def test_a_market_order_pays_the_slippage_on_the_tick_away_from_us() -> None:
    venue = _venue(slippage_bps=Decimal(10))
    venue.apply(_quote("100.00", "100.02"))
    report = await venue.submit(_order("m1", Side.BUY, "0.5", None))
    assert [f.price for f in report.fills] == [Decimal("100.13")]  # 100.02 * 1.001, up a tick
    # the touch itself is back as quoted for the next order
    assert venue._core.touch[BTC].ask == Decimal("100.02")


def test_latencies_repeat_for_a_seed_and_average_the_mean() -> None:
    draws = [FillModel(latency_ms=Decimal(50), seed=3).next_latency() for _ in range(1)]
    again = FillModel(latency_ms=Decimal(50), seed=3)
    assert again.next_latency() == draws[0]
    model = FillModel(latency_ms=Decimal(50), seed=4)
    mean = sum((model.next_latency() for _ in range(4000)), timedelta()) / 4000
    assert timedelta(milliseconds=45) < mean < timedelta(milliseconds=55)
    assert FillModel().next_latency() == timedelta(0)


def test_a_participation_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="participation"):
        FillModel(participation=Decimal(0))


def test_the_feed_setting_names_what_it_accepts(tmp_path: Path) -> None:
    assert parse_feed("binance").kind == "binance"
    with pytest.raises(ConfigError, match="expected one of random, binance, kalshi, replay:PATH"):
        parse_feed("bybit")
    with pytest.raises(ConfigError, match="replay needs a path"):
        parse_feed("replay:")
    with pytest.raises(ConfigError, match="no recorded market data at"):
        parse_feed(f"replay:{tmp_path / 'missing'}")


def test_a_recording_reads_back_as_the_events_it_recorded_in_receipt_order(tmp_path: Path) -> None:
    later = T0 + timedelta(days=1)
    events = [
        _quote("100.00", "100.02"),
        _trade("100.01", "0.3", None),
        Bar(
            symbol=BTC,
            interval="1m",
            open_time=T0,
            close_time=T0 + timedelta(minutes=1),
            open=Decimal(1),
            high=Decimal(2),
            low=Decimal("0.5"),
            close=Decimal("1.5"),
            volume=Decimal(7),
            closed=True,
            received_at=T0 + timedelta(minutes=1),
        ),
        _quote("100.10", "100.12", at=later),
    ]
    recorder = MarketRecorder(tmp_path)
    for e in events:
        recorder.write(e)
    recorder.close()
    assert sorted(p.name for p in (tmp_path / "BTCUSDT").iterdir()) == [
        "2026-11-30.jsonl", "2026-12-01.jsonl",
    ]  # fmt: skip
    assert list(read_recording(tmp_path)) == events


def test_a_bad_recorded_line_names_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text('{"type": "quote", "symbol": "B"}\n')
    with pytest.raises(ConfigError, match=r"x.jsonl:1: not a recorded market event"):
        list(read_recording(tmp_path))


def test_a_replayed_event_keeps_its_spacing_divided_by_the_speed() -> None:
    start = datetime(2027, 1, 1, tzinfo=UTC)
    moved = shifted(_quote("1", "2", at=T0 + timedelta(seconds=4)), T0, start, 2.0)
    assert moved.received_at == start + timedelta(seconds=2)


def _t(coid: str, price: str, qty: str = "1", s: float = 0) -> Trade:
    return Trade(client_order_id=ClientOrderId(coid), strategy_id=StrategyId("s"), symbol=BTC,
                 side=Side.BUY, quantity=Decimal(qty), price=Decimal(price),
                 at=T0 + timedelta(seconds=s))  # fmt: skip


def test_trades_pair_by_client_order_id_and_differ_beyond_the_tolerance() -> None:
    result = compare(
        [_t("a", "100"), _t("b", "100"), _t("c", "100"), _t("d", "100")],
        [_t("a", "100.04", s=1.5), _t("b", "100.06"), _t("c", "100", qty="0.98"), _t("e", "1")],
        Tolerance(),
    )
    verdicts = {r.trade.client_order_id: (r.within, r.paper is not None, r.backtest is not None)
                for r in result.rows}  # fmt: skip
    assert verdicts == {
        "a": (True, True, True),  # 4 bps, 1.5 s
        "b": (False, True, True),  # 6 bps
        "c": (False, True, True),  # 2 % less
        "d": (False, True, False),
        "e": (False, False, True),
    }
    assert (result.matched, result.outside, result.agree) == (3, 4, False)
