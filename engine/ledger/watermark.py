"""Which rows of an append-only ledger table (``fills``, ``settlements``) a reader already holds,
so it can read only the new ones: ids up to a watermark, plus the ids seen above it.

Why not ``id > max_seen``: the id (a bigserial) is taken when a row is inserted, not when its
transaction commits, and the engine's writers (ACK batches, the fill path, the resolver, an
operator's CLI) commit out of id order. A read can see id 11 while id 10's transaction is still
open; ``id > 11`` afterwards would miss 10 for good.

The argument (every read is one statement, or one REPEATABLE READ transaction, that also reads
``pg_current_snapshot()``): a row with an id at most M, the largest id visible to snapshot S_i,
took its id before S_i was taken (the sequence only grows). Its transaction T is then either
visible to S_i (so the row was read), or still running at S_i, or it had taken the id but not
yet its transaction id (a statement takes the id before the row's insert assigns the xid; the
engine's fenced writes lock the lease row first, so only unfenced writers have that window, a
few microseconds). Record M at S_i and pin it at the next read S_k with S_k's xmax: every
transaction that had an xid by then has one below that xmax, so once a later snapshot's xmin
reaches the pin (no transaction older than the pin is running), each such T has finished, and a
committed one was visible to that snapshot, whose read (every id above the old watermark not
yet seen) returned it. M is then complete: ids up to it need never be read again. Above the
watermark the ids already read are kept to skip them. A transaction that runs for long (in any
database of the server: snapshots are server-wide) holds the watermark back: the reads stay
correct, they only cover the rows since it began (after a first load, the whole history:
its ids are all "seen" until the first watermark passes them, two reads later as a rule).

Not covered: an unfenced writer whose insert waits (``ON CONFLICT`` on another open transaction's
row) between taking its id and its xid for longer than one refresh; and a database restored
to an earlier state. Both are what :meth:`engine.portfolio.Portfolio.forget` is for (an outage
and a takeover read everything again).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text

#: first statement of the read's transaction: the snapshot every other statement uses
SNAPSHOT = text(
    "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint "
    "FROM pg_current_snapshot() AS s"
)


class Watermark:
    def __init__(self) -> None:
        #: every row with an id up to this was read (or was never committed)
        self.complete = 0
        #: the ids above ``complete`` already read
        self.seen: set[int] = set()
        # [largest id visible at a read, the xmax of the read after it (None until then)]
        self._candidates: list[list[int | None]] = []

    def params(self, prefix: str) -> dict[str, object]:
        """The next read's parameters: ``id > :{prefix}_after AND id NOT IN :{prefix}_seen``."""
        return {f"{prefix}_after": self.complete, f"{prefix}_seen": list(self.seen)}

    def advance(self, xmin: int, xmax: int, ids: Iterable[int]) -> None:
        """After a read at the snapshot ``(xmin, xmax)`` that returned ``ids``."""
        self.seen.update(ids)
        for candidate in self._candidates:
            if candidate[1] is None:
                candidate[1] = xmax
        self._candidates.append([max(self.seen, default=self.complete), None])
        done = [c for c in self._candidates if c[1] is not None and c[1] <= xmin]
        if done:
            self.complete = max(self.complete, *(int(c[0] or 0) for c in done))
            self._candidates = [c for c in self._candidates if c not in done]
            self.seen = {i for i in self.seen if i > self.complete}
