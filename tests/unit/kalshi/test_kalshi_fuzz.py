"""Fuzzing the Kalshi decoders: the documented payloads with values replaced by hostile ones
(NaN, Infinity, negative, huge, wrong type, unknown enum, removed). Whatever arrives, a decoder
refuses it (``MalformedMessage`` / a msgspec error, or a skipped stream frame) or returns reports
the ledger can hold: finite Decimals, sizes > 0, prices in 0..1, fees >= 0, aware UTC times."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.domain.market import Quote, Trade
from engine.domain.types import VenueName
from engine.exceptions import MalformedMessage
from engine.venues.base import FillReport, InstrumentRules, OrderReport
from engine.venues.kalshi import parsing, schemas
from engine.venues.kalshi.marketdata import KalshiMarketData
from engine.venues.kalshi.stream import decode_market, decode_user
from engine.venues.metrics import VenueMetrics

from .conftest import payload

METRICS = VenueMetrics(account="test", venue="kalshi")

FUZZ = settings(
    max_examples=int(os.environ.get("TRADECTL_FUZZ_EXAMPLES", "150")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
NOW = datetime(2024, 12, 1, tzinfo=UTC)
V = VenueName("kalshi")
HOSTILE = st.sampled_from(
    [
        "NaN",
        "Infinity",
        "-1",
        "1E+999999",
        "-0.01",
        "",
        "2.5",
        "bid?",
        None,
        1e308,
        -5,
        [],
        {},
        "9" * 60,
        "0.0000000000000000000000000000000001",
        "9999-01-01T00:00:00Z",
        "0001-01-01",
    ]
)
_ENVELOPE = msgspec.json.Decoder(schemas.WsEnvelope)
_ORDER = msgspec.json.Decoder(schemas.Order)
_FILL = msgspec.json.Decoder(schemas.Fill)
_MARKET = msgspec.json.Decoder(schemas.Market)
_ENCODER = msgspec.json.Encoder()


def _is_value(v: object) -> bool:
    """A number, a count, a price or a time: what the checks are about."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return True
    return isinstance(v, str) and bool(v) and (v[0].isdigit() or v[0] == "-")


def mutate(data: Any, draw: st.DrawFn) -> Any:
    out = copy.deepcopy(data)
    target = out.get("msg", out)
    keys = sorted(target)
    values = [k for k in keys if _is_value(target[k])]
    # the first change always hits a value field; the others anywhere
    picks = [draw(st.sampled_from(values))]
    picks += [draw(st.sampled_from(keys)) for _ in range(draw(st.integers(0, 2)))]
    for key in picks:
        if draw(st.integers(0, 4)):
            target[key] = draw(HOSTILE)
        else:
            target.pop(key, None)
    return out


def sane_time(ts: datetime | None) -> None:
    assert ts is None or (ts.tzinfo is not None and 2000 <= ts.year < 2100)


def check_order(r: OrderReport) -> None:
    assert r.quantity > 0
    assert r.quantity.is_finite()
    assert 0 <= r.filled_quantity <= r.quantity
    assert r.limit_price is None or 0 <= r.limit_price <= 1
    sane_time(r.venue_ts)


def check_fill(f: FillReport) -> None:
    assert f.quantity > 0
    assert f.quantity.is_finite()
    assert 0 <= f.price <= 1
    assert f.fee >= 0
    assert f.fee.is_finite()
    sane_time(f.venue_ts)


def run(decode: Callable[[bytes], object]) -> Callable[[bytes], None]:
    def go(raw: bytes) -> None:
        try:
            result = decode(raw)
        except (MalformedMessage, msgspec.DecodeError):
            return
        if isinstance(result, OrderReport):
            check_order(result)
        elif isinstance(result, FillReport):
            check_fill(result)
        elif isinstance(result, InstrumentRules):
            assert result.tick_size > 0
            assert result.min_price is not None
            assert result.min_price >= 0
            assert result.max_price is not None
            assert result.max_price <= 1

    return go


@st.composite
def mutated(draw: st.DrawFn, name: str, pick: Callable[[Any], Any] = lambda d: d) -> bytes:
    return _ENCODER.encode(mutate(pick(payload(name)), draw))


@FUZZ
@given(st.one_of(mutated("ws_fill.json"), mutated("ws_user_order.json")))
def test_user_stream_frames_decode_to_sane_reports_or_are_skipped(raw: bytes) -> None:
    run(lambda b: decode_user(_ENVELOPE.decode(b), venue=V, metrics=METRICS, received_at=NOW))(raw)


@FUZZ
@given(mutated("ws_ticker.json"))
def test_ticker_frames_decode_to_sane_quotes_or_are_skipped(raw: bytes) -> None:
    def decode(b: bytes) -> object:
        quote = decode_market(_ENVELOPE.decode(b), metrics=METRICS, received_at=NOW)
        if quote is not None:
            assert 0 <= quote.bid <= 1  # type: ignore[union-attr]
            assert quote.bid_size >= 0  # type: ignore[union-attr]
        return quote

    run(decode)(raw)


@FUZZ
@given(mutated("orders.json", lambda d: d["orders"][0]))
def test_listed_orders_parse_to_sane_reports_or_are_refused(raw: bytes) -> None:
    run(lambda b: parsing.parse_order(_ORDER.decode(b), venue=V, received_at=NOW))(raw)


@FUZZ
@given(mutated("fills.json", lambda d: d["fills"][0]))
def test_rest_fills_parse_to_sane_reports_or_are_refused(raw: bytes) -> None:
    run(lambda b: parsing.parse_fill(_FILL.decode(b), venue=V, received_at=NOW))(raw)


@FUZZ
@given(mutated("market.json", lambda d: d["market"]))
def test_markets_parse_to_sane_rules_or_are_refused(raw: bytes) -> None:
    run(lambda b: parsing.parse_market(_MARKET.decode(b)))(raw)


def test_a_huge_count_is_refused_not_stored() -> None:
    row = {**payload("orders.json")["orders"][0], "initial_count_fp": "1E+40"}
    try:
        parsing.parse_order(_ORDER.decode(_ENCODER.encode(row)), venue=V, received_at=NOW)
    except MalformedMessage:
        return
    raise AssertionError("a count of 1E+40 was accepted")


@FUZZ
@given(
    st.one_of(
        mutated("ws_orderbook_snapshot.json"),
        mutated("ws_orderbook_delta.json", lambda d: _at_the_touch(d)),
        mutated("ws_trade.json"),
    )
)
def test_market_frames_make_sane_quotes_and_trades_or_are_skipped(raw: bytes) -> None:
    data = KalshiMarketData(venue=V, metrics=METRICS, now=lambda: NOW)
    data.on_frame(
        _ENVELOPE.decode(b'{"type":"subscribed","msg":{"channel":"orderbook_delta","sid":2}}')
    )
    data.on_frame(_ENVELOPE.decode(_ENCODER.encode(payload("ws_orderbook_snapshot.json"))))
    try:
        frame = _ENVELOPE.decode(raw)
    except msgspec.DecodeError:
        return
    event = data.on_frame(frame)  # never raises: a bad frame is skipped and counted
    if isinstance(event, Quote):
        assert 0 <= event.bid <= event.ask <= 1
        assert event.bid_size > 0
        assert event.ask_size > 0
    elif isinstance(event, Trade):
        assert 0 <= event.price <= 1
        assert event.quantity > 0
        assert event.quantity.is_finite()
        sane_time(event.venue_ts)


def _at_the_touch(delta: Any) -> Any:
    """The documented delta moved to the documented snapshot's best bid, so it applies."""
    delta["msg"]["price_dollars"] = "0.2200"
    return delta
