"""What becomes of the strategy's intents in a replay: the interface both execution paths (in
memory, :mod:`engine.backtest.in_memory`; persisted, :mod:`engine.backtest.persisted`)
implement, and what they share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from engine.domain.intents import Buy, Cancel, Hold, Sell
from engine.domain.types import ClientOrderId

#: client order id prefix of backtest orders (ids are unique per run: the strategy id is)
ORDER_ID_PREFIX = "bt"
#: how many refused orders a report quotes
MAX_REJECTION_SAMPLES = 5


class ExecutionPath(Protocol):
    """What becomes of the strategy's intents. The market model around it is the same."""

    async def start(self) -> None: ...

    async def heartbeat(self) -> None:
        """Simulated time moved on (a new bar)."""
        ...

    async def decided(self, intent: Hold | Cancel) -> None:
        """A hold or a cancel, acted on at the decision time."""
        ...

    async def submit(self, orders: Sequence[tuple[Buy | Sell, ClientOrderId]]) -> None:
        """Orders reaching the venue, at the arrival quote."""
        ...

    async def settle(self) -> None:
        """The venue moved (quotes, fills): take in what it reported."""
        ...

    async def rejections(self) -> tuple[int, list[str]]:
        """How many orders were refused (risk, controls, venue), and why."""
        ...

    async def close(self) -> None: ...
