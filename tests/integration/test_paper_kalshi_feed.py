"""The paper venue's Kalshi feed reads a market's public order book over HTTP as a quote: the best
YES bid, and 1 minus the best NO bid as the YES ask (a real local HTTP server serving a payload
in Kalshi's shape)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from engine.domain.types import Symbol
from engine.venues.paper.feeds import kalshi_quote

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
BOOK = {"orderbook": {"yes": [[40, 120], [45, 30]], "no": [[50, 10], [52, 75]]}}


@pytest.fixture
async def book_server() -> AsyncIterator[str]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        found = head.startswith("GET /trade-api/v2/markets/PRES-24/orderbook")
        body = json.dumps(BOOK if found else {"error": "not found"}).encode()
        status = "200 OK" if found else "404 Not Found"
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/trade-api/v2"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_kalshi_order_book_is_the_touch_of_the_yes_side(book_server: str) -> None:
    async with httpx.AsyncClient(base_url=book_server) as client:
        quote = await kalshi_quote(client, Symbol("PRES-24"), lambda: T0)
    assert quote is not None
    assert (quote.bid, quote.bid_size, quote.ask, quote.ask_size) == (
        Decimal("0.45"), Decimal(30), Decimal("0.48"), Decimal(75)
    )  # fmt: skip


async def test_an_unknown_market_is_an_http_error_the_feed_logs(book_server: str) -> None:
    async with httpx.AsyncClient(base_url=book_server) as client:
        with pytest.raises(httpx.HTTPStatusError):
            await kalshi_quote(client, Symbol("NOPE"), lambda: T0)
