"""Alerts from the outbox to a real local HTTP channel (apprise ``json://``): content, the
cooldown and its summary, retries while the channel is down; and the facts that raise them
(an incident, a loss halt, a venue rejection) against the real Postgres fixtures."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import httpx
import pytest
from prometheus_client import start_http_server
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.alerting import AlertDelivery, DeliveryConfig, parse_channels
from engine.controls import halt_for_loss
from engine.domain.alerts import AlertDraft, AlertLevel
from engine.exceptions import ConfigError
from engine.ledger.ledger import Ledger
from engine.venues.paper import BTCUSDT, PaperVenue, default_paper_venue
from tests.integration.alert_receiver import Receiver
from tests.integration.test_execution import ACCOUNT, Clock, quote
from tests.integration.test_risk_controls import A, order, rig

COOLDOWN_S = 60.0
RETRY_S = 5.0


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def metrics_url() -> Iterator[str]:
    server, thread = start_http_server(0, addr="127.0.0.1")
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()
    thread.join()


async def metric(url: str, name: str, **labels: str) -> float:
    """One sample of ``name`` read over HTTP (0 when it has none yet)."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(url)).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def ledger(db_engine: AsyncEngine, clock: Clock) -> Ledger:
    return Ledger(db_engine, account=ACCOUNT, venue="paper", clock=clock)  # type: ignore[arg-type]


def delivery(ledger: Ledger, receiver: Receiver, clock: Clock) -> AlertDelivery:
    return AlertDelivery(
        ledger.alerts,
        parse_channels(receiver.url),
        DeliveryConfig(cooldown_s=COOLDOWN_S, retry_s=RETRY_S, retry_max_s=60, send_timeout_s=5),
        clock=clock,
    )


def draft(message: str = "something happened; do this") -> AlertDraft:
    return AlertDraft(level=AlertLevel.HIGH, kind="daily_loss", scope="account:x", message=message)


async def open_drift(ledger: Ledger) -> int:
    incident = await ledger.incidents.open(
        kind="balance_drift",
        scope="strategy:sma-btc",
        severity="error",
        message=(
            "strategy sma-btc paused: venue balance BTC differs from ledger by 0.012. Check "
            "deposits, then run `tradectl reconcile --accept-balances`, and "
            "`tradectl resume --strategy sma-btc`"
        ),
        details={"asset": "BTC"},
        dedupe_key="balance_drift:BTC",
    )
    return incident.id


async def test_an_incident_alert_reaches_the_channel_with_level_account_and_what_to_do(
    ledger: Ledger, receiver: Receiver, clock: Clock
) -> None:
    incident = await open_drift(ledger)
    assert await delivery(ledger, receiver, clock).deliver_due() == 1
    [sent] = receiver.received
    assert "[CRITICAL]" in sent["title"]
    assert ACCOUNT in sent["title"]
    assert "balance_drift" in sent["title"]
    assert f"Reconciliation incident {incident} is open" in sent["message"]
    assert "tradectl reconcile --accept-balances" in sent["message"]
    assert "tradectl resume --strategy sma-btc" in sent["message"]
    [row] = await ledger.alerts.recent()
    assert row.delivered_at is not None
    assert row.details["incident_id"] == incident
    assert row.state == "delivered"


async def test_an_open_incident_seen_again_raises_no_second_alert(
    ledger: Ledger, receiver: Receiver, clock: Clock
) -> None:
    first = await open_drift(ledger)
    assert await open_drift(ledger) == first
    assert len(await ledger.alerts.recent()) == 1


async def test_two_identical_alerts_within_the_cooldown_send_one_then_a_summary(
    ledger: Ledger, receiver: Receiver, clock: Clock
) -> None:
    sender = delivery(ledger, receiver, clock)
    await ledger.alerts.add(draft("loss at 60%"))
    clock.advance(1)
    await ledger.alerts.add(draft("loss at 70%"))
    await sender.deliver_due()
    [sent] = receiver.messages()
    assert sent.startswith("loss at 60%")
    newest, first = await ledger.alerts.recent()
    assert first.suppressed == 1
    assert newest.suppressed_into == first.id
    assert newest.state.startswith("suppressed")

    clock.advance(COOLDOWN_S - 2)  # still within the first one's cooldown: nothing more
    await sender.deliver_due()
    assert len(receiver.received) == 1
    clock.advance(2)
    await sender.deliver_due()
    assert len(receiver.received) == 2
    summary = receiver.received[1]["message"]
    assert "1 more daily_loss alert(s) for account:x" in summary
    assert "The newest: loss at 70%" in summary
    # a repeat after the cooldown is sent again
    await ledger.alerts.add(draft("loss at 80%"))
    await sender.deliver_due()
    assert receiver.messages()[2].startswith("loss at 80%")


async def test_an_alert_stays_undelivered_while_the_channel_is_down_and_is_sent_when_back(
    ledger: Ledger, receiver: Receiver, clock: Clock, metrics_url: str
) -> None:
    sender = delivery(ledger, receiver, clock)
    await receiver.stop()
    alert_id = await ledger.alerts.add(draft())
    labels = {"account": ACCOUNT, "level": "HIGH", "kind": "daily_loss"}
    raised = await metric(metrics_url, "tradectl_alerts_total", **labels)
    assert await sender.deliver_due() == 0
    assert await metric(metrics_url, "tradectl_alerts_total", **labels) == raised + 1
    row = await ledger.alerts.get(alert_id)
    assert row is not None
    assert row.delivered_at is None
    assert row.attempts == 1
    assert row.last_error is not None
    assert "JSON channel #1" in row.last_error
    assert await metric(metrics_url, "tradectl_alerts_undelivered", account=ACCOUNT) == 1
    await receiver.start()  # same port
    assert await sender.deliver_due() == 0  # backing off: not due yet
    clock.advance(RETRY_S)
    assert await sender.deliver_due() == 1
    assert len(receiver.received) == 1
    row = await ledger.alerts.get(alert_id)
    assert row is not None
    assert row.delivered_at is not None
    assert row.attempts == 2
    assert await metric(metrics_url, "tradectl_alerts_undelivered", account=ACCOUNT) == 0
    # counted once, not once per attempt
    assert await metric(metrics_url, "tradectl_alerts_total", **labels) == raised + 1


async def test_a_channel_that_took_the_alert_is_not_sent_it_again_when_another_was_down(
    ledger: Ledger, receiver: Receiver, clock: Clock
) -> None:
    down = Receiver()
    await down.start()
    await down.stop()
    sender = AlertDelivery(
        ledger.alerts,
        parse_channels(f"{receiver.url}, {down.url}"),
        DeliveryConfig(cooldown_s=COOLDOWN_S, retry_s=RETRY_S, send_timeout_s=5),
        clock=clock,
    )
    alert_id = await ledger.alerts.add(draft())
    await sender.deliver_due()
    await down.start()
    clock.advance(RETRY_S)
    assert await sender.deliver_due() == 1
    assert len(receiver.received) == 1
    assert len(down.received) == 1
    row = await ledger.alerts.get(alert_id)
    assert row is not None
    assert len(row.delivered_to) == 2
    await down.stop()


async def test_alerts_are_per_account(
    db_engine: AsyncEngine, ledger: Ledger, receiver: Receiver, clock: Clock
) -> None:
    other = Ledger(db_engine, account="acct-2", venue="paper", clock=clock)  # type: ignore[arg-type]
    await other.alerts.add(draft())
    assert await delivery(ledger, receiver, clock).deliver_due() == 0
    assert await ledger.alerts.recent() == []
    assert len(await ledger.alerts.recent(all_accounts=True)) == 1
    assert await delivery(other, receiver, clock).deliver_due() == 1
    assert ACCOUNT not in receiver.received[0]["title"]


def test_an_alert_url_apprise_does_not_know_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match=r"entry #2 \(nope://…\)") as info:
        parse_channels("json://127.0.0.1:1/a nope://secret-token@host")
    assert "secret-token" not in str(info.value)


# -- the facts that raise alerts ----------------------------------------------------------------


@pytest.fixture
def venue(clock: Clock) -> PaperVenue:
    v = default_paper_venue((BTCUSDT,), seed=3, clock=clock)
    v.set_quote(quote(clock, "50000", "50001", size="1000"))
    return v


async def test_a_loss_halt_delivers_one_critical_alert(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, receiver: Receiver
) -> None:
    r = await rig(db_engine, venue, clock, max_daily_loss=Decimal(50))
    await r.execution.rules_for(BTCUSDT)
    await r.execution.process([order(clock, A, "0.1", i="in")])  # bought at 50001
    venue.set_quote(quote(clock, "49000", "49001", size="10"))
    r.conflator.publish(quote(clock, "49000", "49001", size="10"))
    await r.execution.process([order(clock, A, "0.001", i="more")])
    reason = r.gate.take_halt()
    assert reason is not None
    await halt_for_loss(r.ledger, reason)
    await halt_for_loss(r.ledger, reason)  # already halted: no second alert
    await delivery(r.ledger, receiver, clock).deliver_due()
    [sent] = receiver.received
    assert sent["title"].startswith("[CRITICAL]")
    assert "trading_halted" in sent["title"]
    assert "daily_loss" in sent["message"]
    assert "`tradectl unhalt --reason '…'`" in sent["message"]


async def test_a_venue_rejection_delivers_one_medium_alert(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, receiver: Receiver
) -> None:
    r = await rig(db_engine, venue, clock)
    await r.execution.process([order(clock, A, "500", i="too-big")])  # more than the balance
    assert await r.ledger.orders.non_terminal() == []
    await delivery(r.ledger, receiver, clock).deliver_due()
    [sent] = receiver.received
    assert sent["title"].startswith("[MEDIUM]")
    assert "order_rejected" in sent["title"]
    assert "rejected order" in sent["message"]
    assert f"`tradectl pause --strategy {A} --reason '…'`" in sent["message"]
