"""How long each step of an account's startup took, and the start policy it applies.

A takeover's time to trading again is the lease TTL plus this startup: checking the venue's
symbols, taking the lease, recovering unresolved orders, the startup reconciliation, and loading
what the checks need. Each step is logged when it ends (``startup.step``, with its seconds) and
the whole as ``startup.done``; ``tradectl_startup_seconds{account,step}`` keeps the last
startup's figures, so a slow takeover shows which step it spent its time in (a venue that
answers slowly, thousands of orders to recover, a busy database) without a profiler.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import structlog
from prometheus_client import Gauge

from engine.execution import Execution
from engine.metrics import _metric
from engine.strategy_config import StartPolicy, StrategySpec

log = structlog.get_logger("tradectl.startup")

STARTUP_SECONDS = _metric(
    Gauge,
    "tradectl_startup_seconds",
    "Seconds each step of the account's last startup took (step=total: all of them)",
    ("account", "step"),
)


class StartupSteps:
    """Times the steps of one startup: ``with steps("recover"): ...``."""

    def __init__(self, account: str) -> None:
        self.account = account
        self.seconds: dict[str, float] = {}
        self._began = time.perf_counter()

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - began
            self.seconds[step] = seconds
            STARTUP_SECONDS.labels(self.account, step).set(seconds)
            log.info("startup.step", step=step, seconds=round(seconds, 3))

    def done(self) -> float:
        total = time.perf_counter() - self._began
        STARTUP_SECONDS.labels(self.account, "total").set(total)
        log.info(
            "startup.done",
            seconds=round(total, 3),
            steps={k: round(v, 3) for k, v in self.seconds.items()},
        )
        return total


async def apply_start_policies(strategies: Sequence[StrategySpec], execution: Execution) -> None:
    """``on_start = "cancel"``: the strategy's orders resting from a previous session are
    cancelled now, after reconciliation has shown what rests, before it decides again."""
    for spec in strategies:
        if spec.on_start is not StartPolicy.CANCEL:
            continue
        sent = await execution.cancel_all(
            cause="on_start = cancel: resting from a previous session",
            strategy_id=spec.strategy_id,
        )
        if sent:
            log.info("start_policy.cancelled", strategy=spec.strategy_id, orders=sent)
