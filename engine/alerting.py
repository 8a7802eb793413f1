"""Delivering the alerts outbox (engine/ledger/alerts.py) to people, through apprise.

One task per engine (``alerts`` in engine/runtime.py) claims the account's due alerts, folds a
repeat within the cooldown into the alert it repeats, sends the rest to every channel of
``TRADECTL_ALERT_URLS`` and records the outcome; when a cooldown is over, the repeats it held
back go out as one summary. A channel that fails keeps the alert undelivered and it is retried
with backoff, here or after a restart (the row is the state). Sending runs in a worker thread
(apprise is blocking), so nothing here holds up the event loop or execution.

With no URL configured the engine's log is the channel: each alert is logged and marked
delivered.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import apprise
import structlog
from prometheus_client import REGISTRY, Counter, Gauge

from engine.config import Settings
from engine.domain.alerts import AlertLevel, retry_delay_s
from engine.domain.types import utc_now
from engine.exceptions import ConfigError
from engine.ledger.alerts import AlertRecord, Alerts

log = structlog.get_logger("tradectl.alerts")


def _metric(kind: type[Any], name: str, doc: str, labels: tuple[str, ...]) -> Any:
    # Tests build several engines in one process: reuse a collector already registered.
    existing = REGISTRY._names_to_collectors.get(name)
    return existing if existing is not None else kind(name, doc, labels)


#: every alert the delivery task handled (sent or held back by the cooldown), counted once
ALERTS_TOTAL = _metric(
    Counter, "tradectl_alerts", "Alerts raised, by level and kind", ("account", "level", "kind")
)
ALERTS_UNDELIVERED = _metric(
    Gauge,
    "tradectl_alerts_undelivered",
    "Alerts not yet taken by every channel (repeats held back by the cooldown excluded)",
    ("account",),
)

_NOTIFY_TYPE = {
    AlertLevel.CRITICAL: apprise.NotifyType.FAILURE,
    AlertLevel.HIGH: apprise.NotifyType.FAILURE,
    AlertLevel.MEDIUM: apprise.NotifyType.WARNING,
    AlertLevel.LOW: apprise.NotifyType.INFO,
}
_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True, slots=True)
class Channel:
    """One apprise URL. ``key`` (a hash of the URL) is what the ledger records: the URL itself
    carries tokens and never reaches the database or the log."""

    index: int
    key: str
    service: str
    shown: str  #: the URL as apprise prints it with secrets hidden
    plugin: Any

    def send(self, *, title: str, body: str, level: AlertLevel, timeout_s: float) -> str | None:
        """Blocking: ``None`` when the channel took it, else why not (apprise's own words)."""
        notes: list[str] = []
        sender = apprise.Apprise()
        sender.add(self.plugin)
        ok = sender.notify(
            body=body,
            title=title,
            notify_type=_NOTIFY_TYPE[level],
            timeout=timeout_s,
            log_callback=lambda entry, _plugin: notes.append(entry.message),
            log_level=logging.WARNING,
        )
        if ok:
            return None
        return f"{self.service} channel #{self.index}: " + ("; ".join(notes) or "refused")


def parse_channels(raw: str | None) -> tuple[Channel, ...]:
    """``TRADECTL_ALERT_URLS``: apprise URLs separated by commas or whitespace. An entry apprise
    does not understand is a ConfigError naming its position and scheme only (never the URL)."""
    channels: list[Channel] = []
    for index, url in enumerate((u for u in _SEPARATORS.split(raw or "") if u), start=1):
        plugin = apprise.Apprise.instantiate(url)
        if plugin is None:
            scheme = url.split("://", 1)[0] if "://" in url else "(no scheme)"
            raise ConfigError(
                f"TRADECTL_ALERT_URLS: entry #{index} ({scheme}://…) is not a URL apprise "
                "understands; see https://github.com/caronc/apprise/wiki for the formats "
                "(json://host:port/path, slack://…, tgram://…, mailto://…)"
            )
        channels.append(
            Channel(
                index=index,
                key=hashlib.sha256(url.encode()).hexdigest()[:16],
                service=str(plugin.service_name),
                shown=str(plugin.url(privacy=True)),  # type: ignore[no-untyped-call]
                plugin=plugin,
            )
        )
    return tuple(channels)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryConfig:
    cooldown_s: float = 300.0
    retry_s: float = 5.0
    retry_max_s: float = 300.0
    poll_s: float = 1.0
    #: how long one send may take per channel; a claim outlives all of them
    send_timeout_s: float = 10.0
    batch: int = 20


def delivery_for(
    alerts: Alerts, settings: Settings, *, clock: Callable[[], datetime] = utc_now
) -> AlertDelivery:
    """The delivery of ``settings`` (its channels, cooldown and backoff) for ``alerts``."""
    return AlertDelivery(
        alerts,
        parse_channels(settings.alert_urls.get_secret_value() if settings.alert_urls else None),
        DeliveryConfig(
            cooldown_s=settings.alert_cooldown_s,
            retry_s=settings.alert_retry_s,
            retry_max_s=settings.alert_retry_max_s,
        ),
        clock=clock,
    )


def title_of(alert: AlertRecord) -> str:
    what = "summary" if alert.summary_of is not None else alert.kind
    return f"[{alert.level.value}] tradectl {alert.account}: {what} ({alert.scope})"


def body_of(alert: AlertRecord) -> str:
    return (
        f"{alert.message}\n\naccount {alert.account} · {alert.level.value} · {alert.kind} · "
        f"alert {alert.id} at {alert.created_at.isoformat(timespec='seconds')}"
    )


class AlertDelivery:
    """Delivers one account's alerts."""

    def __init__(
        self,
        alerts: Alerts,
        channels: Sequence[Channel],
        config: DeliveryConfig,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.alerts = alerts
        self.channels = tuple(channels)
        self.config = config
        self.clock = clock
        self._claim_s = config.send_timeout_s * (len(self.channels) + 1) + 5.0

    async def run(self) -> None:
        while True:
            await self.deliver_due()
            await asyncio.sleep(self.config.poll_s)

    async def deliver_due(self) -> int:
        """One pass: summaries whose cooldown is over, then every due alert; how many were
        delivered."""
        await self.alerts.summarize_due(cooldown_s=self.config.cooldown_s)
        delivered = 0
        for alert in await self.alerts.claim(limit=self.config.batch, claim_s=self._claim_s):
            delivered += await self._handle(alert)
        ALERTS_UNDELIVERED.labels(account=self.alerts.account).set(await self.alerts.undelivered())
        return delivered

    async def deliver_one(self, alert_id: int) -> AlertRecord | None:
        """Send one alert now, whatever the cooldown (``tradectl alerts test``); ``None`` when
        another process holds it or it is no longer due. Its state afterwards otherwise."""
        alert = await self.alerts.claim_one(alert_id, claim_s=self._claim_s)
        if alert is None:
            return None
        await self._handle(alert, fold=False)
        return await self.alerts.get(alert_id)

    async def _handle(self, alert: AlertRecord, *, fold: bool = True) -> int:
        if alert.attempts == 0:
            ALERTS_TOTAL.labels(
                account=alert.account, level=alert.level.value, kind=alert.kind
            ).inc()
            leader = (
                await self.alerts.fold_repeat(alert, cooldown_s=self.config.cooldown_s)
                if fold
                else None
            )
            if leader is not None:
                log.info("alert.held_back", note="cooldown", alert=alert.id, repeats=leader)
                return 0
            _log_alert(alert)
        done = set(alert.delivered_to)
        errors: list[str] = []
        for channel in self.channels:
            if channel.key in done:
                continue
            error = await asyncio.to_thread(
                channel.send,
                title=title_of(alert),
                body=body_of(alert),
                level=alert.level,
                timeout_s=self.config.send_timeout_s,
            )
            if error is None:
                done.add(channel.key)
            else:
                errors.append(error)
        complete = not errors
        attempts = alert.attempts + 1
        retry_at = self.clock() + timedelta(
            seconds=retry_delay_s(
                attempts, base_s=self.config.retry_s, max_s=self.config.retry_max_s
            )
        )
        await self.alerts.record_attempt(
            alert.id,
            delivered_to=sorted(done),
            done=complete,
            error="; ".join(errors)[:1000] if errors else None,
            retry_at=retry_at,
        )
        if not complete:
            log.warning(
                "alert.delivery_failed",
                alert=alert.id,
                attempts=attempts,
                retry_at=retry_at.isoformat(timespec="seconds"),
                error="; ".join(errors),
            )
        return int(complete)


def _log_alert(alert: AlertRecord) -> None:
    level = "error" if alert.level in (AlertLevel.CRITICAL, AlertLevel.HIGH) else "warning"
    getattr(log, level)(
        "alert.raised",
        level=alert.level.value,
        kind=alert.kind,
        message=alert.message,
        alert=alert.id,
        scope=alert.scope,
    )
