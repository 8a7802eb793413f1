from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from pydantic import SecretStr
from websockets.asyncio.server import ServerConnection, serve

from engine.domain.market import Bar, Quote, Trade
from engine.domain.types import VenueName
from engine.exceptions import AuthFailed
from engine.venues.base import FillReport, OrderReport, StreamReconnected
from engine.venues.binance import sign_hmac
from engine.venues.binance.signing import HmacSigner, ServerClock
from engine.venues.binance.stream import MarketStream, StreamSettings, UserStream, backoff
from engine.venues.metrics import (
    MALFORMED_MESSAGES,
    MARKET_STREAM,
    UNASSIGNED,
    USER_STREAM,
)
from tests.helpers import eventually

from .conftest import API_KEY, API_SECRET, FIXED_NOW, raw

V = VenueName("binance")
T = TypeVar("T")
Handler = Callable[[ServerConnection], Awaitable[None]]
FAST = StreamSettings(backoff_initial_s=0.01, backoff_max_s=0.05, subscribe_timeout_s=5.0)


@asynccontextmanager
async def ws_server(handler: Handler) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def take(stream: AsyncIterator[T], count: int, timeout: float = 10.0) -> list[T]:
    out: list[T] = []
    try:
        async with asyncio.timeout(timeout):
            async for item in stream:
                out.append(item)
                if len(out) == count:
                    break
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    return out


def malformed() -> float:
    """Skipped stream messages of a venue built without an account (these tests' streams)."""
    return sum(
        float(MALFORMED_MESSAGES.labels(UNASSIGNED, "binance", source)._value.get())
        for source in (MARKET_STREAM, USER_STREAM)
    )


def event(name: str) -> str:
    return json.dumps({"subscriptionId": 0, "event": json.loads(raw(name))})


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def user_stream(url: str, sleeps: Sleeps, settings: StreamSettings = FAST) -> UserStream:
    return UserStream(
        ws_api_url=url,
        api_key=API_KEY,
        signer=HmacSigner(SecretStr(API_SECRET)),
        clock=ServerClock(wall=lambda: 1_499_827_319.559),
        recv_window_ms=5000,
        venue=V,
        settings=settings,
        now=lambda: FIXED_NOW,
        sleep=sleeps,
    )


async def accept_subscription(ws: ServerConnection, seen: list[dict[str, Any]]) -> None:
    request = json.loads(await ws.recv())
    seen.append(request)
    await ws.send(json.dumps({"id": request["id"], "status": 200, "result": {"subscriptionId": 0}}))


# -- backoff -------------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    delays = backoff(initial=1.0, factor=2.0, max_delay=8.0, rng=lambda: 1.0)
    assert [next(delays) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    low = backoff(initial=1.0, factor=2.0, max_delay=8.0, rng=lambda: 0.0)
    assert [next(low) for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]


# -- market data ---------------------------------------------------------------------------


async def test_market_stream_decodes_combined_frames_and_skips_malformed_ones() -> None:
    paths: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        paths.append(ws.request.path if ws.request else "")
        for stream, name in [("bnbusdt@bookTicker", "book_ticker.json")]:
            await ws.send(json.dumps({"stream": stream, "data": json.loads(raw(name))}))
        await ws.send("not json at all")
        await ws.send(json.dumps({"stream": "bnbbtc@trade", "data": {"e": "trade"}}))
        await ws.send(json.dumps({"stream": "bnbbtc@trade", "data": json.loads(raw("trade.json"))}))
        await ws.send(
            json.dumps({"stream": "bnbbtc@kline_1m", "data": json.loads(raw("kline.json"))})
        )
        await ws.wait_closed()

    before = malformed()
    async with ws_server(handler) as url:
        stream = MarketStream(
            stream_url=url,
            symbols=["BNBUSDT", "BNBBTC"],
            channels=["bookTicker", "trade", "kline_1m"],
            venue=V,
            settings=FAST,
            now=lambda: FIXED_NOW,
        )
        events = await take(stream.events(), 3)
    assert [type(e) for e in events] == [Quote, Trade, Bar]
    assert malformed() == before + 2
    assert paths[0].startswith("/stream?streams=bnbusdt@bookTicker/bnbusdt@trade/")


async def test_market_stream_reconnects_after_a_drop() -> None:
    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        data = json.loads(raw("book_ticker.json"))
        data["u"] = connections
        await ws.send(json.dumps({"stream": "bnbusdt@bookTicker", "data": data}))
        await ws.close()

    sleeps = Sleeps()
    async with ws_server(handler) as url:
        stream = MarketStream(
            stream_url=url,
            symbols=["BNBUSDT"],
            channels=["bookTicker"],
            venue=V,
            settings=FAST,
            sleep=sleeps,
        )
        quotes = await take(stream.events(), 2)
    assert [q.sequence for q in quotes if isinstance(q, Quote)] == [1, 2]
    assert sleeps.delays
    assert all(0 < d <= 0.05 for d in sleeps.delays)


# -- user data -----------------------------------------------------------------------------


async def test_user_stream_subscribes_with_a_valid_signature() -> None:
    seen: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        await accept_subscription(ws, seen)
        await ws.send(event("execution_report_new.json"))
        await ws.wait_closed()

    async with ws_server(handler) as url:
        [report] = await take(user_stream(url, Sleeps()).events(), 1)
    assert isinstance(report, OrderReport)
    [request] = seen
    assert request["method"] == "userDataStream.subscribe.signature"
    params = request["params"]
    assert params["apiKey"] == API_KEY
    assert params["timestamp"] == 1499827319559
    assert params["recvWindow"] == 5000
    expected = sign_hmac(API_SECRET, f"apiKey={API_KEY}&recvWindow=5000&timestamp=1499827319559")
    assert params["signature"] == expected


async def test_duplicated_and_reordered_reports_pass_through_and_malformed_are_skipped() -> None:
    seen: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        await accept_subscription(ws, seen)
        await ws.send(event("execution_report_canceled.json"))  # out of order: cancel first
        await ws.send("{truncated")
        await ws.send(event("execution_report_trade.json"))
        await ws.send(json.dumps({"subscriptionId": 0, "event": {"e": "executionReport"}}))
        await ws.send(event("execution_report_trade.json"))  # duplicate
        await ws.send(event("outbound_account_position.json"))
        await ws.wait_closed()

    before = malformed()
    async with ws_server(handler) as url:
        events = await take(user_stream(url, Sleeps()).events(), 6)
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "OrderReport",
        "FillReport",
        "OrderReport",
        "FillReport",
        "OrderReport",
        "BalanceReport",
    ]
    fills = [e for e in events if isinstance(e, FillReport)]
    assert [f.trade_id for f in fills] == ["987654", "987654"]
    assert malformed() == before + 2


async def test_user_stream_yields_stream_reconnected_after_a_drop() -> None:
    seen: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        await accept_subscription(ws, seen)
        await ws.send(event("execution_report_new.json"))
        if len(seen) == 1:
            await ws.close()  # the venue drops the first connection
        else:
            await ws.wait_closed()

    sleeps = Sleeps()
    async with ws_server(handler) as url:
        events = await take(user_stream(url, sleeps).events(), 3)
    assert isinstance(events[0], OrderReport)
    assert isinstance(events[1], StreamReconnected)
    assert events[1].venue == "binance"
    assert "connection lost" in events[1].reason
    assert isinstance(events[2], OrderReport)
    assert len(seen) == 2  # subscribed again, freshly signed
    assert len(sleeps.delays) == 1


async def test_user_stream_rotates_the_connection_before_its_age_limit() -> None:
    seen: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        await accept_subscription(ws, seen)
        await ws.wait_closed()

    settings = StreamSettings(max_connection_age_s=0.2, backoff_initial_s=0.01)
    async with ws_server(handler) as url:
        [reconnected] = await take(user_stream(url, Sleeps(), settings).events(), 1)
    assert isinstance(reconnected, StreamReconnected)
    assert "rotated" in reconnected.reason


async def test_user_stream_answers_pings() -> None:
    pongs: list[bool] = []
    seen: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        await accept_subscription(ws, seen)
        waiter = await ws.ping(b"are-you-there")
        await asyncio.wait_for(waiter, 5)
        pongs.append(True)
        await ws.send(event("execution_report_new.json"))
        await ws.wait_closed()

    settings = StreamSettings(ping_interval_s=None, ping_timeout_s=None)
    async with ws_server(handler) as url:
        stream = user_stream(url, Sleeps(), settings).events()
        [report] = await take(stream, 1)
    assert isinstance(report, OrderReport)
    await eventually(lambda: pongs == [True])


async def test_refused_credentials_end_the_user_stream() -> None:
    async def handler(ws: ServerConnection) -> None:
        request = json.loads(await ws.recv())
        await ws.send(
            json.dumps(
                {
                    "id": request["id"],
                    "status": 401,
                    "error": {"code": -2015, "msg": "Invalid API-key, IP, or permissions."},
                }
            )
        )
        await ws.wait_closed()

    async with ws_server(handler) as url:
        with pytest.raises(AuthFailed):
            await take(user_stream(url, Sleeps()).events(), 1)


async def test_invalid_timestamp_on_subscribe_resyncs_the_clock_and_subscribes_again() -> None:
    attempts: list[dict[str, Any]] = []
    resyncs: list[bool] = []

    async def handler(ws: ServerConnection) -> None:
        request = json.loads(await ws.recv())
        attempts.append(request)
        if len(attempts) == 1:
            error = {
                "code": -1021,
                "msg": "Timestamp for this request is outside of the recvWindow.",
            }
            await ws.send(json.dumps({"id": request["id"], "status": 400, "error": error}))
            await ws.wait_closed()
            return
        await ws.send(
            json.dumps({"id": request["id"], "status": 200, "result": {"subscriptionId": 1}})
        )
        await ws.send(event("execution_report_new.json"))
        await ws.wait_closed()

    async def resync() -> None:
        resyncs.append(True)

    async with ws_server(handler) as url:
        stream = user_stream(url, Sleeps())
        stream._resync_clock = resync
        [report] = await take(stream.events(), 1)
    assert isinstance(report, OrderReport)  # first subscription: no StreamReconnected
    assert resyncs == [True]
    assert len(attempts) == 2
    assert stream.subscription_id == 1


# -- one message never ends a stream -------------------------------------------------------


def er_with(**changes: Any) -> str:
    data = {**json.loads(raw("execution_report_trade.json")), **changes}
    return json.dumps({"subscriptionId": 0, "event": data})


async def test_user_stream_skips_hostile_values_and_delivers_the_next_message() -> None:
    seen: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        await accept_subscription(ws, seen)
        await ws.send(er_with(T=10**20))  # out of range: datetime raised OverflowError here
        await ws.send(er_with(l="NaN"))  # reached the fills table
        await ws.send(er_with(q="-1", t=2**64))
        await ws.send(event("execution_report_new.json"))
        await ws.wait_closed()

    before = malformed()
    sleeps = Sleeps()
    async with ws_server(handler) as url:
        [report] = await take(user_stream(url, sleeps).events(), 1)
    assert isinstance(report, OrderReport)
    assert report.client_order_id == "mUvoqJxFIILMdfAW5iGSOW"
    assert malformed() == before + 3
    # no reconnect: the messages were skipped
    assert len(seen) == 1
    assert sleeps.delays == []


async def test_user_stream_survives_a_decoder_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.venues.binance import stream as stream_module

    real = stream_module.decode_user_event
    calls = 0

    def flaky(raw: bytes, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ZeroDivisionError("a bug in a decoder")
        return real(raw, **kwargs)

    monkeypatch.setattr(stream_module, "decode_user_event", flaky)

    async def handler(ws: ServerConnection) -> None:
        await accept_subscription(ws, [])
        await ws.send(event("execution_report_trade.json"))
        await ws.send(event("execution_report_new.json"))
        await ws.wait_closed()

    before = malformed()
    async with ws_server(handler) as url:
        [report] = await take(user_stream(url, Sleeps()).events(), 1)
    assert isinstance(report, OrderReport)
    assert report.status.value == "NEW"
    assert malformed() == before + 1


def book_frame(stream: str = "bnbusdt@bookTicker", **changes: Any) -> str:
    return json.dumps(
        {"stream": stream, "data": {**json.loads(raw("book_ticker.json")), **changes}}
    )


async def test_market_stream_skips_hostile_quotes_and_other_symbols() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(book_frame(b="NaN"))
        await ws.send(book_frame(A="-40.66"))
        await ws.send(book_frame(u=-1))
        await ws.send(book_frame(s="BTCUSDT"))  # the stream's name says BNBUSDT
        await ws.send(book_frame("btcusdt@bookTicker", s="BTCUSDT"))  # not subscribed
        trade = {**json.loads(raw("trade.json")), "T": 253_402_300_800_000}
        await ws.send(json.dumps({"stream": "bnbbtc@trade", "data": trade}))  # past year 9999
        await ws.send(book_frame(u=7))
        await ws.wait_closed()

    before = malformed()
    async with ws_server(handler) as url:
        stream = MarketStream(
            stream_url=url,
            symbols=["bnbusdt", "BNBBTC"],
            channels=["bookTicker", "trade"],
            venue=V,
            settings=FAST,
            now=lambda: FIXED_NOW,
        )
        [quote] = await take(stream.events(), 1)
    assert isinstance(quote, Quote)
    assert quote.sequence == 7
    assert malformed() == before + 6


async def test_market_stream_survives_a_decoder_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.venues.binance import stream as stream_module

    real = stream_module.decode_market_frame
    calls = 0

    def flaky(raw: bytes, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("a bug in a decoder")
        return real(raw, **kwargs)

    monkeypatch.setattr(stream_module, "decode_market_frame", flaky)

    async def handler(ws: ServerConnection) -> None:
        await ws.send(book_frame(u=1))
        await ws.send(book_frame(u=2))
        await ws.wait_closed()

    before = malformed()
    async with ws_server(handler) as url:
        stream = MarketStream(
            stream_url=url, symbols=["BNBUSDT"], channels=["bookTicker"], venue=V, settings=FAST
        )
        [quote] = await take(stream.events(), 1)
    assert isinstance(quote, Quote)
    assert quote.sequence == 2
    assert malformed() == before + 1
