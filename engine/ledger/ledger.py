"""The ledger: every durable write of the execution protocol (ARCHITECTURE.md, "The durable
execution protocol"), one short transaction per phase.

Concurrency model, in one place:

* **One writer per account**, enforced by the ``leases`` row and its ``epoch``.
  ``orders.reserve`` fences on it (the row locked ``FOR KEY SHARE … WHERE holder AND epoch
  AND expires_at > now``) in its own transaction, so a process that lost the lease can never
  reserve another order. Taking over an expired lease increments the epoch;
  ``orders.lease_epoch`` records which epoch reserved each order.
* **Controls never race a reservation.** ``orders.reserve`` holds a *shared* transaction-level
  advisory lock (:data:`~engine.ledger.controls.CONTROLS_LOCK_KEY`) from its fence statement to
  its commit, and checks controls in a later statement (Postgres READ COMMITTED takes a new
  snapshot per statement). ``controls.set`` takes the same lock *exclusively* before inserting.
  So a control either commits before the reservation's check (which then sees it and blocks) or
  waits until the reservation has committed (and whoever set it then sees that order, e.g. to
  cancel it). Reservations of different accounts do not block each other; clearing a control
  only permits more, so it takes no lock. One account's reservations need not wait for each
  other (its execution reserves one batch at a time), except where controls are applied per
  reservation: that transaction locks the lease row ``FOR NO KEY UPDATE``, so two of them never
  judge reduce-only against the same position.
* **Fill sums are never stale.** A write that derives a state from the fill sum locks the order
  row (``FOR UPDATE``) in the same statement, and every transaction that inserts fills of a
  known order also updates that order's row. When the locked row version is newer than the
  statement's snapshot (another writer committed fills while this one waited), the statement
  changes nothing but its own fills and the state is derived again in a new transaction that
  reads the sum after taking the lock. So two writers appending fills to the same order (the
  user stream and the reconciler) always see each other's fills.
* Every state change is ``UPDATE orders … WHERE state = ANY(allowed_from(to))`` plus an
  ``order_events`` row in the same statement; zero rows means a conflict to re-read, never an
  error to swallow (:class:`engine.exceptions.StateConflict`).
* Filled quantity and average price are always derived from ``fills``; no counter can drift.

Round trips, whatever the batch size (batches travel as arrays through ``unnest``): reserve is
BEGIN / fence / reserve / COMMIT; a venue report or a batch of fills is one statement (lock,
insert fills, derive the state, update, event) in its own implicit transaction; a group of ACKs
(``orders.record_acks``) is BEGIN / one such statement per report status / COMMIT; reads
are one statement. Statements are :class:`~engine.ledger.statements.Statement` constants,
written at the top of the concept module that runs them as SQLAlchemy ``text()`` with ``:name``
parameters, compiled once at import by the asyncpg dialect, and run on a plain asyncpg connection
of the engine's ledger pool (engine/ledger/connections.py), so a call costs little more than raw
asyncpg (the engine, its URL handling and migrations stay SQLAlchemy's).

Timestamps written here come from the injected clock, so tests control time and all rows of one
process agree; the lease logic tolerates clock skew between processes because safety rests on the
epoch, not on the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.types import AccountId, VenueName, utc_now
from engine.ledger.alerts import Alerts
from engine.ledger.balances import Balances
from engine.ledger.controls import Controls
from engine.ledger.decisions import Decisions
from engine.ledger.explain import Explain
from engine.ledger.fence import Fence
from engine.ledger.fills import Fills
from engine.ledger.incidents import Incidents
from engine.ledger.journal import Journal
from engine.ledger.leases import Leases
from engine.ledger.loss_marks import LossMarksPart
from engine.ledger.operations import Operations
from engine.ledger.orders import Orders
from engine.ledger.pnl import Marks, Settlements
from engine.ledger.risk_inputs import RiskInputs


class Ledger:
    """The durable ledger of one account on one venue. Safe to share between coroutines.

    Each concept is one attribute (``ledger.orders.reserve(...)``, ``ledger.fills.append(...)``);
    all of them share this ledger's engine (and its ledger pool), account, venue and clock.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        account: AccountId,
        venue: VenueName,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.account = account
        self.venue = venue
        #: the lease epoch every execution write is fenced on, once the engine holds the lease
        self.fence = Fence(account)
        self.leases = Leases(engine, account=account, venue=venue, clock=clock, fence=self.fence)
        self.decisions = Decisions(
            engine, account=account, venue=venue, clock=clock, fence=self.fence
        )
        self.orders = Orders(engine, account=account, venue=venue, clock=clock, fence=self.fence)
        self.fills = Fills(engine, account=account, venue=venue, clock=clock, fence=self.fence)
        self.controls = Controls(
            engine, account=account, venue=venue, clock=clock, fence=self.fence
        )
        self.incidents = Incidents(
            engine, account=account, venue=venue, clock=clock, fence=self.fence
        )
        self.balances = Balances(
            engine, account=account, venue=venue, clock=clock, fence=self.fence
        )
        self.operations = Operations(
            engine, account=account, venue=venue, clock=clock, fence=self.fence
        )
        self.journal = Journal(engine, account=account, venue=venue, clock=clock, fence=self.fence)
        self.explain = Explain(engine, account=account, venue=venue, clock=clock, fence=self.fence)
        self.risk_inputs = RiskInputs(
            engine, account=account, venue=venue, clock=clock, fence=self.fence
        )
        self.marks = Marks(engine, account=account, venue=venue, clock=clock, fence=self.fence)
        self.settlements = Settlements(
            engine, account=account, venue=venue, clock=clock, fence=self.fence
        )
        self.alerts = Alerts(engine, account=account, venue=venue, clock=clock, fence=self.fence)
        self.loss_marks = LossMarksPart(
            engine, account=account, venue=venue, clock=clock, fence=self.fence
        )
