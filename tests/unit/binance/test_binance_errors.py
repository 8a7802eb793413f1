from __future__ import annotations

import httpx
import pytest

from engine.exceptions import (
    Ambiguous,
    AuthFailed,
    Definitive,
    NotFound,
    RateLimited,
    VenueError,
)
from engine.venues.binance.errors import (
    Operation,
    classify,
    classify_transport,
    parse_retry_after,
)

S, L, C, R = Operation.SUBMIT, Operation.LOOKUP, Operation.CANCEL, Operation.READ


@pytest.mark.parametrize(
    ("operation", "status", "code", "msg", "expected"),
    [
        # refused: nothing placed
        (S, 400, -1013, "Filter failure: LOT_SIZE", Definitive),
        (S, 400, -2010, "Account has insufficient balance for requested action.", Definitive),
        (S, 400, -1100, "Illegal characters found in a parameter.", Definitive),
        (S, 400, -1102, "Mandatory parameter 'price' was not sent.", Definitive),
        (S, 400, -1111, "Precision is over the maximum defined for this asset.", Definitive),
        (S, 400, -1121, "Invalid symbol.", Definitive),
        (S, 400, -1021, "Timestamp for this request is outside of the recvWindow.", Definitive),
        (S, 400, -2013, "Order does not exist.", Definitive),
        # unknown outcome
        (S, 500, None, "Internal Server Error", Ambiguous),
        (S, 502, None, "Bad Gateway", Ambiguous),
        (S, 503, None, "Service Unavailable", Ambiguous),
        (S, 408, -1007, "Timeout waiting for response from backend server.", Ambiguous),
        (S, 400, -1007, "Timeout waiting for response from backend server.", Ambiguous),
        (S, 400, -1006, "An unexpected response was received from the message bus.", Ambiguous),
        (S, 500, -1001, "Internal error; unable to process your request.", Ambiguous),
        # lookups
        (L, 400, -2013, "Order does not exist.", NotFound),
        (L, 400, -2026, "Order was canceled or expired ... archived.", NotFound),
        (C, 400, -2011, "Unknown order sent.", NotFound),
        (C, 400, -2011, "Order was not canceled due to cancel restrictions.", Definitive),
        (C, 400, -2013, "Order does not exist.", NotFound),
        # rate limits
        (S, 429, -1003, "Too much request weight used", RateLimited),
        (S, 418, -1003, "Way too much request weight used; IP banned", RateLimited),
        (S, 400, -1015, "Too many new orders.", RateLimited),
        (R, 429, None, "", RateLimited),
        # credentials
        (S, 401, None, "Unauthorized", AuthFailed),
        (R, 403, None, "Forbidden", AuthFailed),
        (S, 400, -1022, "Signature for this request is not valid.", AuthFailed),
        (S, 401, -2015, "Invalid API-key, IP, or permissions for action.", AuthFailed),
        (S, 401, -2014, "API-key format invalid.", AuthFailed),
        (R, 400, -1002, "You are not authorized to execute this request.", AuthFailed),
    ],
)
def test_classification_per_status_and_code(
    operation: Operation,
    status: int,
    code: int | None,
    msg: str,
    expected: type[VenueError],
) -> None:
    outcome = classify(operation=operation, http_status=status, code=code, msg=msg)
    assert type(outcome) is expected
    assert outcome.code == code
    assert outcome.http_status == status


def test_rate_limited_carries_the_retry_after() -> None:
    outcome = classify(operation=S, http_status=429, code=-1003, retry_after=37.0)
    assert isinstance(outcome, RateLimited)
    assert outcome.retry_after == 37.0


def test_ws_api_error_without_http_status_is_a_refusal() -> None:
    assert isinstance(
        classify(operation=Operation.SUBSCRIBE, http_status=None, code=-1121, msg="x"), Definitive
    )


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("refused"), Definitive),
        (httpx.ConnectTimeout("slow connect"), Definitive),
        (httpx.PoolTimeout("no connection"), Definitive),
        (httpx.ReadTimeout("no answer"), Ambiguous),
        (httpx.WriteTimeout("half sent"), Ambiguous),
        (httpx.RemoteProtocolError("peer closed"), Ambiguous),
        (httpx.ReadError("connection reset"), Ambiguous),
    ],
)
def test_transport_failures_before_sending_are_definitive_after_sending_ambiguous(
    exc: httpx.HTTPError, expected: type[VenueError]
) -> None:
    assert type(classify_transport(exc, operation=S)) is expected


@pytest.mark.parametrize(
    ("header", "seconds"), [("120", 120.0), (" 7 ", 7.0), ("soon", None), (None, None)]
)
def test_retry_after_header_parsing(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds
