from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest

from engine.domain.market import Bar, Quote, Trade
from engine.domain.types import Liquidity, OrderType, Side, VenueName, VenueOrderStatus
from engine.exceptions import MalformedMessage
from engine.venues.base import BalanceReport, FillReport, OrderReport
from engine.venues.binance import schemas
from engine.venues.binance.market_frames import decode_market_frame
from engine.venues.binance.parsing import (
    StreamTerminated,
    decode_user_event,
    ms_to_utc,
    parse_instrument_rules,
)
from engine.venues.metrics import MALFORMED_MESSAGES, VenueMetrics

from .conftest import FIXED_NOW, raw

V = VenueName("binance")
TEST_METRICS = VenueMetrics(account="acct-a", venue="binance-test")


def user(name: str) -> list[OrderReport | FillReport | BalanceReport]:
    return decode_user_event(raw(name), venue=V, received_at=FIXED_NOW)


def combined(stream: str, name: str) -> bytes:
    return b'{"stream":"' + stream.encode() + b'","data":' + raw(name) + b"}"


def test_ms_timestamps_become_aware_utc_exactly() -> None:
    assert ms_to_utc(1499405658657) == datetime(2017, 7, 7, 5, 34, 18, 657000, tzinfo=UTC)


def test_new_execution_report_is_an_open_order_without_fill() -> None:
    [report] = user("execution_report_new.json")
    assert isinstance(report, OrderReport)
    assert report.client_order_id == "mUvoqJxFIILMdfAW5iGSOW"
    assert report.cancel_client_order_id is None
    assert report.venue_order_id == "4293153"
    assert report.status is VenueOrderStatus.NEW
    assert report.side is Side.BUY
    assert report.type is OrderType.LIMIT
    assert report.quantity == Decimal("1.00000000")
    assert report.limit_price == Decimal("0.10264410")
    assert report.filled_quantity == 0
    assert report.venue_ts == ms_to_utc(1499405658657)  # T, not the event time E
    assert report.received_at == FIXED_NOW
    assert report.reason is None


def test_trade_execution_report_yields_the_fill_then_the_order_state() -> None:
    fill, order = user("execution_report_trade.json")
    assert isinstance(fill, FillReport)
    assert isinstance(order, OrderReport)
    assert fill.trade_id == "987654"
    assert fill.client_order_id == "mUvoqJxFIILMdfAW5iGSOW"
    assert fill.quantity == Decimal("0.40000000")  # l: last executed quantity
    assert fill.price == Decimal("0.10264410")  # L: last executed price
    assert fill.fee == Decimal("0.00004000")
    assert fill.fee_asset == "ETH"
    assert fill.liquidity is Liquidity.MAKER  # m
    assert fill.venue_ts == ms_to_utc(1499405669999)
    assert order.status is VenueOrderStatus.PARTIALLY_FILLED
    assert order.filled_quantity == Decimal("0.40000000")  # z: cumulative
    assert order.cumulative_quote == Decimal("0.04105764")


def test_cancel_execution_report_is_keyed_by_the_original_client_id() -> None:
    [order] = user("execution_report_canceled.json")
    assert isinstance(order, OrderReport)
    assert order.client_order_id == "mUvoqJxFIILMdfAW5iGSOW"  # C
    assert order.cancel_client_order_id == "cancelReq-1"  # c
    assert order.status is VenueOrderStatus.CANCELED
    assert order.filled_quantity == Decimal("0.40000000")


def test_account_position_becomes_balance_reports() -> None:
    [balance] = user("outbound_account_position.json")
    assert isinstance(balance, BalanceReport)
    assert balance.asset == "ETH"
    assert balance.free == Decimal("10000.000000")
    assert balance.locked == 0
    assert balance.venue_ts == ms_to_utc(1564034571073)


def test_balance_update_delta_yields_no_absolute_balance() -> None:
    assert user("balance_update.json") == []


def test_unknown_enum_value_is_malformed_with_its_payload() -> None:
    payload = raw("execution_report_new.json").replace(b'"X": "NEW"', b'"X": "PENDING_NEW"')
    with pytest.raises(MalformedMessage, match="PENDING_NEW") as caught:
        decode_user_event(payload, venue=V, received_at=FIXED_NOW)
    assert caught.value.raw == payload


def test_unknown_event_type_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match="somethingNew"):
        decode_user_event(b'{"e":"somethingNew","E":1}', venue=V, received_at=FIXED_NOW)


def test_truncated_event_is_malformed() -> None:
    with pytest.raises(MalformedMessage):
        decode_user_event(raw("execution_report_new.json")[:80], venue=V, received_at=FIXED_NOW)


def test_stream_terminated_event_ends_the_subscription() -> None:
    with pytest.raises(StreamTerminated):
        decode_user_event(b'{"e":"eventStreamTerminated","E":1}', venue=V, received_at=FIXED_NOW)


def test_book_ticker_becomes_a_quote_with_its_update_id() -> None:
    quote = decode_market_frame(
        combined("bnbusdt@bookTicker", "book_ticker.json"), received_at=FIXED_NOW
    )
    assert quote == Quote(
        symbol="BNBUSDT",  # type: ignore[arg-type]
        bid=Decimal("25.35190000"),
        bid_size=Decimal("31.21000000"),
        ask=Decimal("25.36520000"),
        ask_size=Decimal("40.66000000"),
        venue_ts=None,
        received_at=FIXED_NOW,
        sequence=400900217,
    )


def test_trade_where_the_buyer_made_the_market_was_sold_into() -> None:
    trade = decode_market_frame(combined("bnbbtc@trade", "trade.json"), received_at=FIXED_NOW)
    assert isinstance(trade, Trade)
    assert trade.trade_id == "12345"
    assert trade.price == Decimal("0.001")
    assert trade.quantity == Decimal("100")
    assert trade.aggressor is Side.SELL
    assert trade.venue_ts == ms_to_utc(1672515782136)


def test_kline_becomes_a_bar() -> None:
    bar = decode_market_frame(combined("bnbbtc@kline_1m", "kline.json"), received_at=FIXED_NOW)
    assert isinstance(bar, Bar)
    assert (bar.interval, bar.closed) == ("1m", False)
    assert (bar.open, bar.high, bar.low, bar.close) == (
        Decimal("0.0010"),
        Decimal("0.0025"),
        Decimal("0.0015"),
        Decimal("0.0020"),
    )
    assert bar.open_time == ms_to_utc(1672515780000)
    assert bar.close_time == ms_to_utc(1672515839999)


def test_exchange_info_filters_become_instrument_rules() -> None:
    info = msgspec.json.decode(raw("exchange_info.json"), type=schemas.ExchangeInfo)
    rules = parse_instrument_rules(info.symbols[0])
    assert rules.tick_size == Decimal("0.00000100")
    assert rules.step_size == Decimal("0.00100000")
    assert (rules.min_qty, rules.max_qty) == (Decimal("0.001"), Decimal("100000"))
    assert rules.min_notional == Decimal("10")
    assert rules.max_notional == Decimal("10000")
    assert (rules.base_asset, rules.quote_asset) == ("ETH", "BTC")


@pytest.mark.parametrize(
    ("intent", "rounded"),
    [("1.23456", "1.234"), ("0.0019999", "0.001"), ("0.0009", "0"), ("5", "5")],
)
def test_quantity_rounding_never_exceeds_the_intent(intent: str, rounded: str) -> None:
    info = msgspec.json.decode(raw("exchange_info.json"), type=schemas.ExchangeInfo)
    rules = parse_instrument_rules(info.symbols[0])
    result = rules.round_quantity(Decimal(intent))
    assert result == Decimal(rounded)
    assert result <= Decimal(intent)


def test_a_skipped_message_is_counted_for_its_account_venue_and_source() -> None:
    from engine.venues.binance import parsing

    metrics = TEST_METRICS
    before = MALFORMED_MESSAGES.labels("acct-a", "binance-test", "rest")._value.get()
    untouched = MALFORMED_MESSAGES.labels("acct-b", "binance-test", "rest")._value.get()
    parsing.record_malformed(metrics, "rest", b"{oops", "test")
    assert MALFORMED_MESSAGES.labels("acct-a", "binance-test", "rest")._value.get() == before + 1
    assert MALFORMED_MESSAGES.labels("acct-b", "binance-test", "rest")._value.get() == untouched


# -- hostile values ------------------------------------------------------------------------


def er(**changes: object) -> bytes:
    import json

    return json.dumps({**json.loads(raw("execution_report_trade.json")), **changes}).encode()


@pytest.mark.parametrize(
    "changes",
    [
        {"l": "NaN"},  # 'NaN'::numeric > 0 is true in Postgres: it reached the fills table
        {"l": "sNaN"},
        {"l": "Infinity"},
        {"l": "0"},
        {"L": "-1"},
        {"n": "-0.1"},
        {"q": "0"},
        {"z": "-1"},
        {"Z": "NaN"},
        {"p": "1e999999999"},
        {"T": 10**20},  # OverflowError in datetime.fromtimestamp
        {"T": 123},  # 1970
        {"t": 2**64},
        {"i": -5},
        {"x": "SOMETHING_NEW"},
        {"s": ""},
    ],
)
def test_execution_report_with_a_hostile_value_is_malformed(changes: dict[str, object]) -> None:
    payload = er(**changes)
    with pytest.raises(MalformedMessage) as caught:
        decode_user_event(payload, venue=V, received_at=FIXED_NOW)
    assert caught.value.raw == payload


def test_the_stream_name_and_the_payload_must_name_the_same_symbol() -> None:
    frame = combined("ethbtc@trade", "trade.json")  # the payload says BNBBTC
    with pytest.raises(MalformedMessage, match="carried 'BNBBTC'"):
        decode_market_frame(frame, received_at=FIXED_NOW)


def test_ms_to_utc_refuses_times_outside_2000_to_2100() -> None:
    assert ms_to_utc(946_684_800_000) == datetime(2000, 1, 1, tzinfo=UTC)
    for ms in (946_684_799_999, 4_102_444_800_000, 10**20, -(10**20)):
        with pytest.raises(MalformedMessage):
            ms_to_utc(ms)


def test_logged_payloads_carry_no_credentials() -> None:
    from structlog.testing import capture_logs

    from engine.venues.binance import parsing

    echoed = (
        "GET /api/v3/order?symbol=BTCUSDT&timestamp=1&signature=5e1f2a9c&recvWindow=5000\n"
        "X-MBX-APIKEY: vmPUZE6mv9SD\n"
        "Authorization: Bearer tok3n\n"
        '{"apiKey": "vmPUZE6mv9SD", "signature":"5e1f2a9c", "listenKey": "pqia91ma19a5"}\n'
        '{\\"signature\\":\\"5e1f2a9c\\"}\n'
        "Params(api_key='vmPUZE6mv9SD')"
    )
    with capture_logs() as logs:
        parsing.record_malformed(
            TEST_METRICS, "rest", echoed.encode(), "refused: signature=5e1f2a9c"
        )
    [entry] = logs
    text = f"{entry['raw']} {entry['reason']}"
    for secret in ("5e1f2a9c", "vmPUZE6mv9SD", "tok3n", "pqia91ma19a5"):
        assert secret not in text
    assert "symbol=BTCUSDT" in text
    assert "recvWindow=5000" in text


def test_logged_payloads_are_truncated() -> None:
    from structlog.testing import capture_logs

    from engine.venues.binance import parsing

    with capture_logs() as logs:
        parsing.record_malformed(TEST_METRICS, "rest", b"x" * 100_000, "too long")
    assert len(logs[0]["raw"]) == parsing.MAX_LOGGED_CHARS
