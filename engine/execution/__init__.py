"""The execution coroutine and what feeds it: one per account, intents in, each decision an
exchange order at most once (see :mod:`engine.execution.core`).

- :mod:`~engine.execution.core`: intake, reserve, final gate, submit, cancels;
- :mod:`~engine.execution.recovery`: lookups of orders with an unknown outcome, missing fills;
- :mod:`~engine.execution.fill_path`: the user stream applied to the ledger;
- :mod:`~engine.execution.venue_filters`: the venue's grid and minimums as a verdict.
"""

from engine.domain.types import UNRESOLVED
from engine.execution.config import ExecutionConfig
from engine.execution.core import Execution
from engine.execution.fill_path import CommittedFacts, FillPath
from engine.execution.protocols import Lease, RiskGate

__all__ = [
    "UNRESOLVED",
    "CommittedFacts",
    "Execution",
    "ExecutionConfig",
    "FillPath",
    "Lease",
    "RiskGate",
]
