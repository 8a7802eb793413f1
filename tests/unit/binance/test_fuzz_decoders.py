"""Fuzzing every Binance wire decoder: whatever arrives, a decoder either refuses it as
:class:`MalformedMessage` (or ends the subscription with :class:`StreamTerminated`) or returns
reports the ledger can hold: finite Decimals, sizes > 0, prices and fees >= 0, aware UTC
timestamps in 2000..2100.

Inputs are (a) the recorded payloads in ``tests/resources/binance`` with one to three values
replaced by something hostile (NaN, Infinity, negative, huge, wrong type, unknown enum) or
removed, sometimes with the serialized bytes damaged too, and (b) arbitrary JSON, either free
or shaped like the payload (its keys, any values).

``TRADECTL_FUZZ_EXAMPLES`` sets the examples per test (default 150; 2000 for a nightly run).
``TRADECTL_FUZZ_TALLY=1`` prints what each decoder did with its inputs at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.domain.market import Bar, Quote, Trade
from engine.domain.types import Symbol, TradeId, VenueName
from engine.exceptions import MalformedMessage, VenueError
from engine.venues.base import BalanceReport, FillReport, InstrumentRules, OrderReport
from engine.venues.binance import BinanceVenue, market_frames, parsing, rest, schemas
from engine.venues.binance.parsing import StreamTerminated
from engine.venues.binance.ratelimit import RateBudget
from engine.venues.binance.signing import ServerClock

from .conftest import FIXED_NOW, REST_URL, FakeTime, make_config, payload

settings.register_profile(
    "tradectl-fuzz",
    max_examples=int(os.environ.get("TRADECTL_FUZZ_EXAMPLES", "150")),
    # Decoding is microseconds; the first examples pay for imports and the JIT of hypothesis.
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # Reproducible in CI; the nightly run's larger budget still explores new ground.
    derandomize=True,
    database=None,
)
FUZZ = settings.get_profile("tradectl-fuzz")
#: the venue-level scenarios build a venue and a mocked HTTP client per example
VENUE_FUZZ = settings(FUZZ, max_examples=max(20, FUZZ.max_examples // 4))

V = VenueName("binance")
MIN_TS = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TS = datetime(2100, 1, 1, tzinfo=UTC)

#: decoder -> outcome -> examples (printed with TRADECTL_FUZZ_TALLY=1)
TALLY: defaultdict[str, Counter[str]] = defaultdict(Counter)


@pytest.fixture(scope="module", autouse=True)
def _print_tally() -> Iterator[None]:
    yield
    if os.environ.get("TRADECTL_FUZZ_TALLY"):
        for name, outcomes in sorted(TALLY.items()):
            print(f"\n{name}: {sum(outcomes.values())} examples, {dict(outcomes)}")


# -- what a decoder may return ----------------------------------------------------------------


def _finite(value: Decimal, what: str, *, tiny_ok: bool = False) -> None:
    assert isinstance(value, Decimal), what
    assert value.is_finite(), f"{what} not finite: {value}"
    # and small enough for arithmetic and Postgres (a finite 1E+999999999 is neither)
    assert value.adjusted() < 31, f"{what} out of range: {value}"
    # quotes (never stored) are allowed digits below 1E-30: they only round to 0
    assert tiny_ok or value == 0 or value.adjusted() > -31, f"{what} out of range: {value}"
    value * 2 + 1


def _non_negative(value: Decimal, what: str) -> None:
    _finite(value, what)
    assert value >= 0, f"{what} negative: {value}"


def _positive(value: Decimal, what: str) -> None:
    _finite(value, what)
    assert value > 0, f"{what} not positive: {value}"


def _timestamp(value: datetime | None, what: str) -> None:
    if value is None:
        return
    assert value.tzinfo is not None, what
    assert value.utcoffset() == UTC.utcoffset(None), what
    assert MIN_TS <= value < MAX_TS, f"{what} out of range: {value}"


def _id(value: str, what: str) -> None:
    assert value.isdigit(), f"{what}: {value!r}"
    assert int(value) < 2**63, f"{what}: {value!r}"


def check_fill(fill: FillReport) -> None:
    assert fill.symbol
    _id(fill.trade_id, "trade id")
    if fill.venue_order_id is not None:
        _id(fill.venue_order_id, "order id")
    _positive(fill.quantity, "fill quantity")
    _non_negative(fill.price, "fill price")
    _non_negative(fill.fee, "fee")
    _timestamp(fill.venue_ts, "fill venue_ts")


def check_order(order: OrderReport) -> None:
    assert order.symbol
    assert order.client_order_id
    if order.venue_order_id is not None:
        _id(order.venue_order_id, "order id")
    _positive(order.quantity, "order quantity")
    _non_negative(order.filled_quantity, "filled quantity")
    if order.limit_price is not None:
        _positive(order.limit_price, "limit price")
    if order.cumulative_quote is not None:
        _non_negative(order.cumulative_quote, "cumulative quote")
    _timestamp(order.venue_ts, "order venue_ts")
    for fill in order.fills:
        check_fill(fill)


def check_balance(balance: BalanceReport) -> None:
    assert balance.asset
    _non_negative(balance.free, "free")
    _non_negative(balance.locked, "locked")
    _timestamp(balance.venue_ts, "balance venue_ts")


def check_rules(rules: InstrumentRules) -> None:
    for name in ("tick_size", "step_size", "min_qty", "max_qty", "min_notional", "min_price"):
        _non_negative(getattr(rules, name), name)
    for name in ("max_notional", "max_price"):
        if getattr(rules, name) is not None:
            _non_negative(getattr(rules, name), name)


def check_market(event: object) -> None:
    if event is None:
        return
    if isinstance(event, Quote):
        for name in ("bid", "bid_size", "ask", "ask_size"):
            value = getattr(event, name)
            _finite(value, name, tiny_ok=True)
            assert value >= 0, f"{name} negative: {value}"
        assert event.sequence is None or 0 <= event.sequence < 2**63
    elif isinstance(event, Trade):
        _id(event.trade_id, "trade id")
        _non_negative(event.price, "trade price")
        _positive(event.quantity, "trade quantity")
        _timestamp(event.venue_ts, "trade venue_ts")
    elif isinstance(event, Bar):
        for name in ("open", "high", "low", "close", "volume"):
            _non_negative(getattr(event, name), name)
        _timestamp(event.open_time, "open_time")
        _timestamp(event.close_time, "close_time")
    else:
        raise AssertionError(f"unexpected market event {event!r}")
    assert event.symbol


def check_report(report: object) -> None:
    if isinstance(report, FillReport):
        check_fill(report)
    elif isinstance(report, OrderReport):
        check_order(report)
    elif isinstance(report, BalanceReport):
        check_balance(report)
    else:
        raise AssertionError(f"unexpected report {report!r}")


# -- the decoders, raw bytes in -----------------------------------------------------------------


def user_event(raw: bytes) -> None:
    for report in parsing.decode_user_event(raw, venue=V, received_at=FIXED_NOW):
        check_report(report)


def market_frame(raw: bytes) -> None:
    check_market(market_frames.decode_market_frame(raw, received_at=FIXED_NOW))


def ws_api_frame(raw: bytes) -> None:
    frame = parsing.decode_ws_api_frame(raw)
    sub_id = parsing.ws_api_subscription_id(frame)
    assert sub_id is None or isinstance(sub_id, int)
    if frame.has_event:
        user_event(bytes(frame.event))


def order_answer(raw: bytes) -> None:
    order = rest.decode_answer(rest._ORDER_DECODER, raw)
    check_order(parsing.parse_order(order, venue=V, received_at=FIXED_NOW))


def orders_answer(raw: bytes) -> None:
    # Rows are parsed one by one by the venue (a bad one is skipped): each must hold alone.
    for order in rest.decode_answer(rest._ORDERS_DECODER, raw):
        with contextlib.suppress(MalformedMessage):
            check_order(parsing.parse_order(order, venue=V, received_at=FIXED_NOW))


def trades_answer(raw: bytes) -> None:
    for trade in rest.decode_answer(rest._TRADES_DECODER, raw):
        with contextlib.suppress(MalformedMessage):
            check_fill(parsing.parse_account_trade(trade, venue=V, received_at=FIXED_NOW))


def account_answer(raw: bytes) -> None:
    account = rest.decode_answer(rest._ACCOUNT_DECODER, raw)
    for balance in parsing.parse_account(account, venue=V, received_at=FIXED_NOW):
        check_balance(balance)


def exchange_info_answer(raw: bytes) -> None:
    info = rest.decode_answer(rest._EXCHANGE_INFO_DECODER, raw)
    for symbol in info.symbols:
        with contextlib.suppress(MalformedMessage):
            check_rules(parsing.parse_instrument_rules(symbol))


@dataclass(frozen=True)
class Target:
    name: str
    decode: Callable[[bytes], None]
    #: recorded payloads, as the decoder receives them
    seeds: Sequence[Any]
    expected: tuple[type[BaseException], ...] = (MalformedMessage,)


def _combined(stream: str, name: str) -> dict[str, Any]:
    return {"stream": stream, "data": payload(name)}


#: the documented end of a subscription
TERMINATED = {"e": "eventStreamTerminated", "E": 1728973001334}

TARGETS = [
    Target(
        "decode_user_event",
        user_event,
        [
            payload("execution_report_new.json"),
            payload("execution_report_trade.json"),
            payload("execution_report_canceled.json"),
            payload("outbound_account_position.json"),
            payload("balance_update.json"),
            TERMINATED,
        ],
        (MalformedMessage, StreamTerminated),
    ),
    Target(
        "decode_market_frame",
        market_frame,
        [
            _combined("bnbusdt@bookTicker", "book_ticker.json"),
            _combined("bnbbtc@trade", "trade.json"),
            _combined("bnbbtc@kline_1m", "kline.json"),
        ],
    ),
    Target(
        "decode_ws_api_frame",
        ws_api_frame,
        [
            payload("ws_api_subscribe_response.json"),
            {"subscriptionId": 0, "event": payload("execution_report_trade.json")},
            {"subscriptionId": 0, "event": payload("outbound_account_position.json")},
            {"subscriptionId": 0, "event": TERMINATED},
        ],
        (MalformedMessage, StreamTerminated),
    ),
    Target(
        "parse_order",
        order_answer,
        [payload("new_order_full.json"), payload("query_order.json"), payload("cancel_order.json")],
    ),
    Target("parse_order (openOrders)", orders_answer, [payload("open_orders.json")]),
    Target("parse_account_trade", trades_answer, [payload("my_trades.json")]),
    Target("parse_account", account_answer, [payload("account.json")]),
    Target("parse_instrument_rules", exchange_info_answer, [payload("exchange_info.json")]),
]


def run(target: Target, raw: bytes) -> None:
    try:
        target.decode(raw)
    except target.expected as exc:
        TALLY[target.name][type(exc).__name__] += 1
        return
    except AssertionError:
        TALLY[target.name]["bad report"] += 1
        raise
    except Exception as exc:
        TALLY[target.name][f"UNEXPECTED {type(exc).__name__}"] += 1
        raise
    TALLY[target.name]["accepted"] += 1


# -- hostile inputs ------------------------------------------------------------------------------

BAD_NUMBER_TEXT = st.one_of(
    st.sampled_from(
        [
            "NaN",
            "nan",
            "-NaN",
            "sNaN",
            "-sNaN",
            "Infinity",
            "-Infinity",
            "inf",
            "1e999999999",
            "-1e999999999",
            "1E-999999",
            "1e31",
            "-1",
            "-0",
            "-0.00000001",
            "0",
            "0E-50",
            "1_000",
            " 1 ",
            "",
            ".",
            "0x10",
        ]
    ),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers().map(str),
)
BAD_INTS = st.one_of(
    st.sampled_from(
        [
            -1,
            0,
            2**63 - 1,
            2**63,
            2**64,
            -(2**63) - 1,
            10**30,
            946_684_799_999,  # a millisecond before 2000
            4_102_444_800_000,  # 2100
            253_402_300_800_000,  # past datetime.max
            -62_135_596_800_001,  # before datetime.min
        ]
    ),
    st.integers(),
)
BAD_OTHER = st.one_of(
    st.sampled_from(
        [None, True, False, [], {}, "", "FOO", "garbage", "\x00", "buy", "TRADE ", "BNBBTC"]
    ),
    st.floats(),
    st.text(max_size=12),
)
BAD_VALUE = st.one_of(BAD_NUMBER_TEXT, BAD_INTS, BAD_OTHER)

JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
ANY_JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    items: Iterator[tuple[Any, Any]]
    if isinstance(doc, dict):
        items = iter(doc.items())
    elif isinstance(doc, list):
        items = iter(enumerate(doc))
    else:
        return out
    for key, value in items:
        out.append((*prefix, key))
        out.extend(_paths(value, (*prefix, key)))
    return out


def _keys(doc: Any) -> list[str]:
    return sorted({p[-1] for p in _paths(doc) if isinstance(p[-1], str)})


def _dump(doc: Any) -> bytes:
    # allow_nan: a bare NaN/Infinity token is one more thing a peer might send
    return json.dumps(doc, allow_nan=True).encode()


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[Any]) -> bytes:
    doc = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.integers(0, 4)) == 0:
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(BAD_VALUE)
    raw = _dump(doc)
    damage = draw(st.integers(0, 9))
    if damage == 0:  # cut short
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif damage == 1:  # garbage bytes spliced in
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(max_size=8)) + raw[at:]
    return raw


@st.composite
def arbitrary(draw: st.DrawFn, seeds: Sequence[Any]) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return _dump(draw(ANY_JSON))
    # shaped like a seed: its keys, any values (nested once, for the envelopes)
    seed = draw(st.sampled_from(seeds))
    keys = _keys(seed)
    value = ANY_JSON | BAD_VALUE
    shaped = st.dictionaries(st.sampled_from(keys), value, max_size=len(keys))
    doc = draw(shaped)
    if kind == 3 and isinstance(seed, dict):
        # keep the envelope, fill what is inside
        for outer in ("data", "event"):
            if outer in seed:
                doc = {**seed, outer: draw(shaped)}
    return _dump(doc)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
@FUZZ
@given(data=st.data())
def test_mutated_recorded_payloads(target: Target, data: st.DataObject) -> None:
    run(target, data.draw(mutated(target.seeds)))


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
@FUZZ
@given(data=st.data())
def test_arbitrary_json(target: Target, data: st.DataObject) -> None:
    run(target, data.draw(arbitrary(target.seeds)))


def test_the_recorded_payloads_are_accepted() -> None:
    """The seeds themselves decode: the fuzzing starts from valid input."""
    for target in TARGETS:
        for seed in target.seeds:
            if seed is TERMINATED or (isinstance(seed, dict) and seed.get("event") is TERMINATED):
                with pytest.raises(StreamTerminated):
                    target.decode(_dump(seed))
            else:
                target.decode(_dump(seed))


# -- venue methods: answers about other symbols and orders ----------------------------------------

ASKED = Symbol("BNBBTC")
SYMBOLS = st.sampled_from(["BNBBTC", "ETHBTC", "bnbbtc", ""])
ORDER_IDS = st.sampled_from([100234, 100235, 7, 0, -1, 2**63])


@st.composite
def trade_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    [row] = payload("my_trades.json")
    rows = []
    for trade_id in range(draw(st.integers(0, 4))):
        rows.append(
            {
                **row,
                "id": 28457 + trade_id,
                "symbol": draw(SYMBOLS),
                "orderId": draw(ORDER_IDS),
                "qty": draw(st.sampled_from(["12.0", "NaN", "-1", "0"])),
            }
        )
    return rows


@st.composite
def order_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    base = payload("query_order.json")
    return [
        {
            **base,
            "symbol": draw(SYMBOLS),
            "orderId": draw(ORDER_IDS),
            "clientOrderId": draw(st.sampled_from(["ours-1", "ours-2", ""])),
            "origQty": draw(st.sampled_from(["1.0", "NaN", "0"])),
        }
        for _ in range(draw(st.integers(0, 4)))
    ]


async def _venue_calls(trades: list[dict[str, Any]], orders: list[dict[str, Any]]) -> None:
    fake = FakeTime()
    with respx.mock(base_url=REST_URL, assert_all_called=False) as api:
        api.get("/api/v3/time").respond(json=payload("server_time.json"))
        api.get("/api/v3/myTrades").respond(json=trades)
        api.get("/api/v3/allOrders").respond(json=orders)
        api.get("/api/v3/openOrders").respond(json=orders)
        venue = BinanceVenue(
            make_config(),
            budget=RateBudget(clock=fake, sleep=fake.sleep),
            clock=ServerClock(wall=fake),
            now=lambda: FIXED_NOW,
        )
        try:
            owners = {
                (o["symbol"], o["orderId"]): o["clientOrderId"]
                for o in orders
                if o["symbol"] == ASKED
            }
            try:
                fills = await venue.trades_since(ASKED, TradeId("1"))
            except VenueError:
                TALLY["BinanceVenue.trades_since"]["VenueError"] += 1
            else:
                TALLY["BinanceVenue.trades_since"]["returned"] += 1
                for fill in fills:
                    check_fill(fill)
                    assert fill.symbol == ASKED
                    assert fill.venue_order_id is not None
                    assert fill.client_order_id == owners[(ASKED, int(fill.venue_order_id))]
            for report in await venue.open_orders(ASKED):
                check_order(report)
                assert report.symbol == ASKED
        finally:
            await venue.close()


@VENUE_FUZZ
@given(trades=trade_rows(), orders=order_rows())
def test_venue_never_attributes_another_symbols_rows(
    trades: list[dict[str, Any]], orders: list[dict[str, Any]]
) -> None:
    """A row of another symbol, or of an order id only another symbol has, is skipped or
    refused; it never crashes (a ``KeyError`` once) nor lends its client id to our fill."""
    try:
        asyncio.run(_venue_calls(trades, orders))
    except (AssertionError, VenueError):
        raise
    except Exception as exc:
        TALLY["BinanceVenue.trades_since"][f"UNEXPECTED {type(exc).__name__}"] += 1
        raise


# -- the schemas stay the ones the decoders were fuzzed with ------------------------------------


def test_every_wire_struct_is_fuzzed() -> None:
    """A new wire struct needs a target above (and its checks in parsing)."""
    fuzzed = {
        schemas.ExecutionReport,
        schemas.OutboundAccountPosition,
        schemas.BalanceUpdate,
        schemas.EventHeader,
        schemas.CombinedFrame,
        schemas.BookTicker,
        schemas.TradeEvent,
        schemas.KlineEvent,
        schemas.Kline,
        schemas.WsApiFrame,
        schemas.WsApiError,
        schemas.Order,
        schemas.OrderFill,
        schemas.AccountTrade,
        schemas.AccountInfo,
        schemas.AssetBalance,
        schemas.ExchangeInfo,
        schemas.SymbolInfo,
        schemas.SymbolFilter,
        schemas.RateLimit,
        # decoded only for their code and message, or a clock offset (validated in rest)
        schemas.ErrorBody,
        schemas.ServerTime,
        schemas.AccountPositionBalance,
    }
    structs = {
        obj
        for obj in vars(schemas).values()
        if isinstance(obj, type) and issubclass(obj, msgspec.Struct) and obj is not msgspec.Struct
    }
    assert structs == fuzzed
