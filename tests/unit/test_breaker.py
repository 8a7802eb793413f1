"""The circuit breaker's state machine (engine.domain.breaker) and its endpoint classes."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from engine.config import Settings
from engine.domain.breaker import Breaker, BreakerConfig, BreakerState
from engine.domain.types import AccountId, VenueName
from engine.exceptions import Ambiguous, AuthFailed, Definitive, NotFound, RateLimited
from engine.ledger.ledger import Ledger
from engine.venue_guard import (
    EndpointClass,
    VenueGuard,
    endpoint_class,
    is_venue_failure,
    key_hint,
)
from engine.venue_status import circuit_line
from engine.venues.kalshi.errors import Operation
from engine.venues.kalshi.rest import _endpoint as kalshi_endpoint
from engine.venues.metrics import VenueMetrics
from tests.metrics_http import metrics_server

CONFIG = BreakerConfig(failure_threshold=3, recovery_timeout_s=10.0, success_threshold=2)


def tripped(at: float = 0.0) -> Breaker:
    breaker = Breaker(CONFIG)
    for _ in range(3):
        breaker.failure(at, "GET /api/v3/order: ambiguous")
    return breaker


def test_failures_below_the_threshold_keep_it_closed() -> None:
    breaker = Breaker(CONFIG)
    breaker.failure(0.0)
    breaker.failure(0.0)
    assert breaker.state(0.0) is BreakerState.CLOSED
    assert breaker.allows(0.0)


def test_a_success_resets_the_run_of_failures() -> None:
    breaker = Breaker(CONFIG)
    breaker.failure(0.0)
    breaker.failure(0.0)
    breaker.success(0.0)
    breaker.failure(0.0)
    breaker.failure(0.0)
    assert breaker.state(0.0) is BreakerState.CLOSED


def test_the_threshold_of_failures_in_a_row_opens_it() -> None:
    breaker = tripped()
    assert breaker.state(1.0) is BreakerState.OPEN
    assert not breaker.allows(1.0)
    assert breaker.retry_in(4.0) == pytest.approx(6.0)
    assert breaker.trips == 1
    assert "ambiguous" in breaker.last_failure


def test_it_turns_half_open_after_the_recovery_timeout() -> None:
    breaker = tripped()
    assert breaker.state(9.9) is BreakerState.OPEN
    assert breaker.state(10.0) is BreakerState.HALF_OPEN
    assert breaker.allows(10.0)
    assert breaker.retry_in(10.0) == 0.0


def test_successes_while_half_open_close_it_at_the_threshold() -> None:
    breaker = tripped()
    assert breaker.success(11.0) is BreakerState.HALF_OPEN
    assert breaker.success(11.0) is BreakerState.CLOSED


def test_a_failure_while_half_open_opens_it_again_with_a_fresh_timeout() -> None:
    breaker = tripped()
    breaker.success(11.0)
    assert breaker.failure(12.0) is BreakerState.OPEN
    assert breaker.trips == 2
    assert breaker.state(21.0) is BreakerState.OPEN
    assert breaker.state(22.0) is BreakerState.HALF_OPEN


def test_a_late_success_while_open_does_not_close_it() -> None:
    breaker = tripped()
    breaker.success(1.0)
    breaker.success(1.0)
    assert breaker.state(1.0) is BreakerState.OPEN


def test_gauge_values_follow_the_documented_encoding() -> None:
    assert [s.gauge for s in BreakerState] == [0, 1, 2]
    assert BreakerState.OPEN.gauge == 2
    assert BreakerState.HALF_OPEN.gauge == 1


@pytest.mark.parametrize("bad", [{"failure_threshold": 0}, {"recovery_timeout_s": 0.0}])
def test_a_config_that_could_never_work_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="breaker"):
        BreakerConfig(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("POST /api/v3/order", EndpointClass.ORDERS),
        ("DELETE /api/v3/order", EndpointClass.ORDERS),
        ("GET /api/v3/order", EndpointClass.READS),
        ("GET /api/v3/openOrders", EndpointClass.READS),
        ("GET /api/v3/account", EndpointClass.READS),
        ("WS userDataStream.subscribe.signature", EndpointClass.STREAMS),
        ("POST /api/v3/userDataStream", EndpointClass.STREAMS),
        ("POST /portfolio/events/orders", EndpointClass.ORDERS),
        ("DELETE /portfolio/events/orders/{id}", EndpointClass.ORDERS),
        ("GET /portfolio/orders/{id}", EndpointClass.READS),
        ("GET /portfolio/balance", EndpointClass.READS),
    ],
)
def test_endpoints_fall_into_their_class(endpoint: str, expected: EndpointClass) -> None:
    assert endpoint_class(endpoint) is expected


def test_only_failures_of_the_venue_count_against_the_breaker() -> None:
    assert is_venue_failure(Ambiguous("502"))
    assert is_venue_failure(RateLimited("429", retry_after=1.0))
    assert is_venue_failure(TimeoutError())
    assert not is_venue_failure(None)
    assert not is_venue_failure(Definitive("insufficient balance"))
    assert not is_venue_failure(NotFound("no such order"))
    assert not is_venue_failure(AuthFailed("bad key"))


def test_the_key_hint_names_the_setting_and_never_the_whole_key() -> None:
    hint = key_hint("TRADECTL_BINANCE_API_KEY", "abcdefghijklmnop")
    assert hint == "TRADECTL_BINANCE_API_KEY (ending …mnop)"
    assert "abcdefgh" not in hint
    assert key_hint("TRADECTL_BINANCE_API_KEY", "short") == "TRADECTL_BINANCE_API_KEY"


def test_the_resolver_backs_off_while_the_reads_breaker_is_open_never_past_its_probe() -> None:
    now = [0.0]
    metrics = VenueMetrics(account="backoff", venue="simulator")
    # the guard writes nothing to the ledger here (no auth failure): an unconnected engine
    unconnected = create_async_engine("postgresql+asyncpg://unused@/unused")
    ledger = Ledger(unconnected, account=AccountId("backoff"), venue=VenueName("simulator"))
    guard = VenueGuard(ledger, metrics, CONFIG, monotonic=lambda: now[0])
    assert guard.reads_backoff() == 0.0
    for _ in range(3):
        metrics.request("GET /api/v3/order", Ambiguous("503"))
    assert guard.state(EndpointClass.READS) is BreakerState.OPEN
    assert [guard.reads_backoff() for _ in range(3)] == [1.0, 2.0, 4.0]
    now[0] = 9.5
    assert guard.reads_backoff() == pytest.approx(0.5)  # the probe comes first
    now[0] = 10.0
    assert guard.reads_backoff() == 0.0
    # an auth failure is not the venue failing: it halts instead (written by the guard's task)
    metrics.request("GET /api/v3/account", AuthFailed("bad key"))
    assert guard.state(EndpointClass.READS) is BreakerState.HALF_OPEN


async def test_tradectl_status_reads_the_running_engines_breakers_from_its_metrics() -> None:
    metrics = VenueMetrics(account="status-line", venue="simulator")
    unconnected = create_async_engine("postgresql+asyncpg://unused@/unused")
    ledger = Ledger(unconnected, account=AccountId("status-line"), venue=VenueName("simulator"))
    guard = VenueGuard(ledger, metrics, CONFIG)
    for _ in range(3):
        metrics.request("POST /api/v3/order", Ambiguous("503"))
    assert guard.state(EndpointClass.ORDERS) is BreakerState.OPEN
    with metrics_server() as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        line = await circuit_line(
            Settings(account="status-line", metrics_port=port, metrics_host="0.0.0.0")
        )
    assert line == "circuit breakers: orders open, reads closed, streams closed"
    assert (await circuit_line(Settings(account="status-line"))).startswith(
        "circuit breakers: in the running engine's status"
    )


def test_kalshi_endpoint_labels_carry_no_order_or_market_ids() -> None:
    assert kalshi_endpoint("DELETE", "/portfolio/events/orders/abc-1", Operation.CANCEL) == (
        "DELETE /portfolio/events/orders/{id}"
    )
    assert kalshi_endpoint("GET", "/portfolio/orders/abc-1", Operation.LOOKUP) == (
        "GET /portfolio/orders/{id}"
    )
    assert kalshi_endpoint("GET", "/markets/PRES-YES", Operation.READ) == "GET /markets/{id}"
    assert kalshi_endpoint("GET", "/portfolio/fills", Operation.READ) == "GET /portfolio/fills"
