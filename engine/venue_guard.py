"""The venue's health as the execution path sees it: circuit breakers and auth-failure halts.

:class:`VenueGuard` observes every request outcome and stream change the adapter reports to its
:class:`~engine.venues.metrics.VenueMetrics` and keeps one breaker
(:mod:`engine.domain.breaker`) per endpoint class:

- ``orders``: placing and cancelling. While it is open no new order is sent: intents are denied
  with a ``circuit_open`` verdict, and a reserved order meets the same verdict at the final gate
  (it expires unsent). Cancels still go out: they only reduce exposure.
- ``reads``: lookups, open orders, trades, balances, rules. While it is open the resolver backs
  off until the breaker's recovery time instead of asking every second.
- ``streams``: the user- and market-stream connections and their subscriptions.

An ``AuthFailed`` answer on any endpoint (submit, reads, the user stream's subscription) halts
the account (:func:`halt_for_auth`): a HALT control and a critical incident naming the key to
check. The engine keeps running: cancels and reconciliation need no new orders.

:class:`GuardedGate` puts the breaker (and the connection state of
:mod:`engine.connection`) in front of the risk gate, so both checks are verdicts stored with
the decision and counted like every other check.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import structlog

from engine.domain.alerts import auth_halted_alert
from engine.domain.breaker import Breaker, BreakerConfig, BreakerState
from engine.domain.orders import Order
from engine.domain.risk import RiskAssessment, Verdict
from engine.domain.types import ControlKind, ControlScope, VerdictResult
from engine.exceptions import AuthFailed, VenueError
from engine.ledger.ledger import Ledger
from engine.protection_config import EndpointClass
from engine.venues.metrics import VenueMetrics, outcome_of

if TYPE_CHECKING:
    from engine.domain.intents import OrderIntent
    from engine.execution.core import Execution
    from engine.execution.protocols import RiskGate

log = structlog.get_logger("tradectl.venue_guard")

#: how often the gauges follow an open breaker's turn to half-open, and auth halts are written
TICK_S = 0.5
#: the resolver's pause between passes while the reads breaker is open: doubling from the first
#: to the longest, never past the breaker's probe time (lookups go on, less often)
READS_BACKOFF_MIN_S = 1.0
READS_BACKOFF_MAX_S = 8.0
#: request outcomes that say the venue (or the way to it) is unwell
_FAILURES = frozenset({"ambiguous", "rate_limited", "timeout", "error"})


def endpoint_class(endpoint: str) -> EndpointClass:
    """The class of an adapter's endpoint label (``"POST /api/v3/order"``, ``"WS …"``)."""
    method, _, path = endpoint.partition(" ")
    if method == "WS" or "userDataStream" in path or "listenKey" in path:
        return EndpointClass.STREAMS
    if method in ("POST", "DELETE", "PUT") and "order" in path.lower():
        return EndpointClass.ORDERS
    return EndpointClass.READS


def is_venue_failure(exc: BaseException | None) -> bool:
    """A failure a breaker counts: the venue did not answer for our request (5xx, timeout,
    rate limit, connection error), as opposed to an answer about it (a refusal, not found)."""
    return exc is not None and outcome_of(exc) in _FAILURES


def key_hint(name: str, key: str | None) -> str:
    """The key an operator must check, never the key itself: the setting and its last four
    characters."""
    if not key:
        return name
    return f"{name} (ending …{key[-4:]})" if len(key) > 8 else name


async def halt_for_auth(
    ledger: Ledger, account: str, exc: AuthFailed, *, where: str, key: str
) -> None:
    """Halt the account after the venue refused its credentials (idempotent: one control, one
    incident however many requests fail). Nothing else stops: cancels and reconciliation go
    on, and fail or succeed on their own."""
    text = _error_text(exc)
    reason = (
        f"venue refused our credentials on {where} ({text}); check {key}, "
        "then `tradectl unhalt --reason '…'`"
    )
    # the incident first: whoever sees the halt finds the incident that explains it
    await ledger.incidents.open(
        kind="auth_failed",
        scope=f"account:{account}",
        severity="critical",
        message=f"trading halted for account {account}: {reason}",
        details={"code": exc.code, "http_status": exc.http_status, "where": where, "key": key},
        dedupe_key=f"auth_failed:{account}",
    )
    await ledger.controls.set(
        ControlScope.ACCOUNT,
        account,
        ControlKind.HALT,
        reason=reason,
        set_by="engine",
        alert=auth_halted_alert(account=account, error=f"{text}; check {key}"),
    )


def _error_text(exc: VenueError) -> str:
    code = f" (code {exc.code})" if exc.code is not None else ""
    return f"{type(exc).__name__}: {exc}{code}"


class VenueGuard:
    """One account's breakers for one venue connection, and its auth-failure halts."""

    def __init__(
        self,
        ledger: Ledger,
        metrics: VenueMetrics,
        config: BreakerConfig | Mapping[EndpointClass, BreakerConfig],
        *,
        key: str = "the venue API key",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.metrics = metrics
        self.key = key
        self._monotonic = monotonic
        #: one breaker per endpoint class, each with its own thresholds (the TOML's
        #: ``[breakers.<class>]``, engine/protection_config.py) or all with the same
        self.breakers = {
            cls: Breaker(config if isinstance(config, BreakerConfig) else config[cls])
            for cls in EndpointClass
        }
        self._auth: list[tuple[AuthFailed, str]] = []
        self._reads_backoff = READS_BACKOFF_MIN_S
        self._wake = asyncio.Event()
        metrics.observers.append(self)
        self.publish()

    # -- VenueObserver -------------------------------------------------------------------------

    def request(self, endpoint: str, exc: BaseException | None) -> None:
        cls = endpoint_class(endpoint)
        if isinstance(exc, AuthFailed):
            self._auth.append((exc, endpoint))
            self._wake.set()
            return
        if is_venue_failure(exc):
            self._record(cls, failed=True, what=f"{endpoint}: {outcome_of(exc)}")
        else:
            self._record(cls, failed=False)

    def stream(self, stream: str, up: bool) -> None:
        self._record(EndpointClass.STREAMS, failed=not up, what=f"{stream} stream dropped")

    def serve(self, execution: Execution) -> None:
        """Execution names this key when the submit path halts, and its resolver backs off
        while the reads breaker is open."""
        execution.credential = self.key
        execution.resolve_backoff = self.reads_backoff

    async def auth_failed(self, exc: AuthFailed, where: str = "the user stream") -> None:
        """An auth failure the adapter did not report as a request (a stream's own refusal)."""
        await halt_for_auth(self.ledger, self.metrics.account, exc, where=where, key=self.key)

    # -- what the execution path asks -----------------------------------------------------------

    def state(self, cls: EndpointClass) -> BreakerState:
        return self.breakers[cls].state(self._monotonic())

    def allows_orders(self) -> bool:
        return self.breakers[EndpointClass.ORDERS].allows(self._monotonic())

    def retry_in(self, cls: EndpointClass) -> float:
        """Seconds until the open breaker of ``cls`` lets probes through (0: not open)."""
        return self.breakers[cls].retry_in(self._monotonic())

    def reads_backoff(self) -> float:
        """How long the resolver waits before its next pass: nothing while reads flow; while
        the reads breaker is open, doubling from ``READS_BACKOFF_MIN_S`` to
        ``READS_BACKOFF_MAX_S``, never past the breaker's probe time."""
        wait = self.retry_in(EndpointClass.READS)
        if wait <= 0:
            self._reads_backoff = READS_BACKOFF_MIN_S
            return 0.0
        delay = min(wait, self._reads_backoff)
        self._reads_backoff = min(self._reads_backoff * 2, READS_BACKOFF_MAX_S)
        return delay

    def states(self) -> dict[str, str]:
        now = self._monotonic()
        return {cls.value: breaker.state(now).value for cls, breaker in self.breakers.items()}

    def status_line(self) -> str:
        now = self._monotonic()
        parts = []
        for cls, breaker in self.breakers.items():
            state = breaker.state(now)
            extra = (
                f" (retry in {breaker.retry_in(now):.0f}s)" if state is BreakerState.OPEN else ""
            )
            parts.append(f"{cls.value} {state.value}{extra}")
        return "circuit breakers: " + ", ".join(parts)

    def publish(self) -> None:
        now = self._monotonic()
        for cls, breaker in self.breakers.items():
            self.metrics.circuit_state(cls.value, breaker.state(now).gauge)

    # -- the task ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep the gauges current (open turns half-open with no request) and write the halt
        of every auth failure the adapter reported."""
        while True:
            try:
                async with asyncio.timeout(TICK_S):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            self.publish()
            while self._auth:
                exc, endpoint = self._auth[0]
                log.error("venue.auth_failed", endpoint=endpoint, error=str(exc), key=self.key)
                await halt_for_auth(
                    self.ledger, self.metrics.account, exc, where=endpoint, key=self.key
                )
                self._auth.pop(0)

    def _record(self, cls: EndpointClass, *, failed: bool, what: str = "") -> None:
        breaker = self.breakers[cls]
        now = self._monotonic()
        before = breaker.state(now)
        after = breaker.failure(now, what) if failed else breaker.success(now)
        if after is not before:
            self.metrics.circuit_state(cls.value, after.gauge)
            fields = {"endpoint": cls.value, "state": after.value, "venue": self.metrics.venue}
            if after is BreakerState.OPEN:
                log.warning(
                    "circuit.opened",
                    last_failure=breaker.last_failure,
                    retry_in_s=round(breaker.retry_in(now), 1),
                    **fields,
                )
            else:
                log.info("circuit.changed", **fields)


class GuardedGate:
    """The risk gate with the venue's state in front: ``circuit_open`` while the orders
    breaker is open, ``disconnected`` while the account has lost its connection. Both at
    assessment (the intent is denied, the verdict stored) and at the final gate (a reserved
    order expires unsent)."""

    def __init__(
        self,
        gate: RiskGate,
        guard: VenueGuard,
        disconnected: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.gate = gate
        self.guard = guard
        #: why the account is disconnected (``engine.connection``), ``None`` while connected
        self.disconnected = disconnected

    async def prepare(self) -> None:
        await self.gate.prepare()

    def reserved(self) -> None:
        self.gate.reserved()

    def on_submitted(self, order: Order, now: datetime) -> None:
        self.gate.on_submitted(order, now)

    def assess(self, intent: OrderIntent, now: datetime) -> RiskAssessment:
        return self._with_venue(self.gate.assess(intent, now))

    def recheck(self, order: Order, now: datetime) -> RiskAssessment:
        return self._with_venue(self.gate.recheck(order, now))

    def venue_verdicts(self) -> list[Verdict]:
        verdicts: list[Verdict] = []
        state = self.guard.state(EndpointClass.ORDERS)
        if state is BreakerState.OPEN:
            breaker = self.guard.breakers[EndpointClass.ORDERS]
            verdicts.append(
                Verdict(
                    check="circuit_open",
                    result=VerdictResult.REJECT,
                    limit=f"{breaker.config.failure_threshold} failures in a row",
                    observed=state.value,
                    message=(
                        f"the venue's orders circuit is open ({breaker.last_failure}); "
                        f"retry in {self.guard.retry_in(EndpointClass.ORDERS):.0f}s"
                    ),
                )
            )
        why = self.disconnected()
        if why is not None:
            verdicts.append(
                Verdict(
                    check="disconnected",
                    result=VerdictResult.REJECT,
                    limit="connected",
                    observed="disconnected",
                    message=why,
                )
            )
        return verdicts

    def _with_venue(self, assessment: RiskAssessment) -> RiskAssessment:
        extra = self.venue_verdicts()
        if not extra:
            return assessment
        return dataclasses.replace(
            assessment,
            verdicts=(*assessment.verdicts, *extra),
            approved=False,
            quantity=Decimal(0),
        )
