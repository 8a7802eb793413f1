"""Every error tradectl raises on purpose, under one root.

Foreign exceptions (httpx, websockets, asyncpg) are translated once, at the boundary where they
occur, into one of these; nothing above the adapters catches a library's exception type.

    TradectlError
    ├── ConfigError                  a setting or a config file is wrong (names the setting)
    ├── SchemaNotAtHead              the database needs `tradectl migrate`
    ├── LedgerError
    │   ├── LeaseLost                another process holds the account's lease (fenced out)
    │   ├── StateConflict            an order transition found the row in an unexpected state
    │   └── DatabaseUnavailable      the database went away; retry after it is back
    ├── MalformedMessage             a venue message that could not be decoded (raw payload kept)
    └── VenueError                   an outcome of a call to a venue
        ├── Definitive               refused; the venue guarantees nothing was placed/changed
        ├── Ambiguous                the call may or may not have taken effect: look it up
        ├── NotFound                 a lookup found no such order
        ├── RateLimited              back off for ``retry_after`` seconds
        └── AuthFailed               credentials refused: halt trading, open an incident
"""

from __future__ import annotations


class TradectlError(Exception):
    """Root of every tradectl error."""


class ConfigError(TradectlError):
    """A bad setting or config file. The message names the setting and what is expected."""


class SchemaNotAtHead(TradectlError):
    """The ledger schema is not at the migrations' head."""


class LedgerError(TradectlError):
    pass


class LeaseLost(LedgerError):
    """This process no longer holds the account's lease epoch: it must stop reserving at once."""


class StateConflict(LedgerError):
    """An order was not in a state the transition allows; re-read it rather than swallow this."""


class DatabaseUnavailable(LedgerError):
    """The database could not be reached or dropped the connection."""


class ShutdownStuck(TradectlError):
    """A graceful stop ran past its deadline: some task ignored cancellation."""


class MalformedMessage(TradectlError):
    """A venue message that could not be decoded. ``raw`` keeps the payload for the log."""

    def __init__(self, message: str, *, raw: bytes | str = b"") -> None:
        super().__init__(message)
        self.raw = raw


class VenueError(TradectlError):
    """An outcome of a venue call other than success.

    ``code`` is the venue's own error code when it gave one (e.g. Binance ``-2010``).
    """

    def __init__(self, message: str, *, code: int | None = None, http_status: int | None = None):
        super().__init__(message)
        self.code = code
        self.http_status = http_status


class Definitive(VenueError):
    """The venue refused and guarantees nothing was placed (filter failure, balance, bad params)."""


class Ambiguous(VenueError):
    """The request may have taken effect (timeout, reset after send, 5xx, Binance -1007)."""


class NotFound(VenueError):
    """The venue does not know the order (Binance -2013 on lookup)."""


class ReadsBehind(VenueError):
    """The venue's reads do not cover a moment yet (they lag its writes): read again later."""


class RateLimited(VenueError):
    """Too many requests; nothing should be sent to the venue for ``retry_after`` seconds."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        code: int | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, http_status=http_status)
        self.retry_after = retry_after


class AuthFailed(VenueError):
    """Credentials or signature refused. Trading must halt until an operator fixes it."""
