"""What every command shares: the typer apps, the consoles, and the one error path.

Every refusal and every :class:`TradectlError` leaves through :func:`fail`: one line on stderr,
starting with ``error:``, and exit code 2, so a script (or an operator's eye) can rely on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Iterator
from importlib.metadata import version
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperArgument, TyperGroup, TyperOption

from engine.config import Settings, load_settings
from engine.database import Database
from engine.domain.types import AccountId, VenueName
from engine.exceptions import TradectlError
from engine.ledger.ledger import Ledger


def _metavars(command: Any, ctx: Any) -> Any:
    """Name each option's value after the option (``--reason REASON``), give flags and
    arguments (named in their own column) none: help shows no raw Python type tags (``<str>``,
    ``<bool>``, ``<int>``)."""
    params = [*command.params, command.get_help_option(ctx)]
    for param in params:
        if param is None or getattr(param, "_tradectl_named", False):
            continue
        param._tradectl_named = True
        if isinstance(param, TyperOption) and param.metavar is None:
            long = next((o for o in param.opts if o.startswith("--")), param.opts[0])
            param.metavar = "" if param.is_flag else long.lstrip("-").upper().replace("-", "_")
        elif isinstance(param, TyperArgument):
            if param.metavar is None and param.name:
                param.metavar = param.name.upper()
            param.display_type_rich = lambda ctx: ""  # type: ignore[method-assign]
    return command


# typer's own click types (vendored in newer typer, click's in older): the overrides take Any.
class _Group(TyperGroup):
    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if isinstance(command, TyperGroup) and not isinstance(command, _Group):
            # a sub-app (`tradectl requests drop`): its commands get the same help
            command.__class__ = _Group
        return None if command is None else _metavars(command, ctx)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _metavars(self, ctx)
        super().format_help(ctx, formatter)


app = typer.Typer(
    name="tradectl",
    help="An asyncio trading engine with a durable Postgres ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_Group,
)
incidents_app = typer.Typer(
    help="List and resolve incidents.", invoke_without_command=True, cls=_Group
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tradectl {version('tradectl')}")
        raise typer.Exit()


@app.callback()
def _main(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """An asyncio trading engine with a durable Postgres ledger."""


app.add_typer(incidents_app, name="incidents")

# Piped (a script, `| less`, `| grep`), rich would wrap every line and table at 80 columns: a
# row or a command to paste must stay one line there.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 500)
# soft_wrap: an error names a command to paste; it must not be broken across lines
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

#: exit code of every refused input and every TradectlError (click's own usage errors use it too)
EXIT_INPUT = 2


def one_line(message: object) -> str:
    """Collapse a multi-line message (settings errors list one problem per line)."""
    parts = [part.strip() for part in str(message).splitlines() if part.strip()]
    # "invalid settings:" introduces its list: no "; " right after a colon
    return "".join(
        part + ("" if i == len(parts) - 1 else " " if part.endswith(":") else "; ")
        for i, part in enumerate(parts)
    )


def fail(message: object, code: int = EXIT_INPUT) -> NoReturn:
    """Print ``error: MESSAGE`` as one line on stderr and exit with ``code``."""
    # Text, not markup: a message may quote operator input such as "[x]", which rich would eat.
    err.print(Text.assemble(("error:", "bold red"), " ", one_line(message)))
    raise typer.Exit(code)


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Turn a TradectlError raised by the body into the one-line error."""
    try:
        yield
    except TradectlError as exc:
        fail(exc)


def configured_settings() -> Settings:
    """The settings as configured (``tradectl run`` decides the demo account itself)."""
    with guard():
        return load_settings()


def settings() -> Settings:
    """The engine's settings, with the ledger account the demo exchange trades as (after a
    reset of the built-in simulator that is ``<TRADECTL_ACCOUNT>-N``: engine/demo.py)."""
    from engine.demo import ledger_account

    config = configured_settings()
    with guard():
        return ledger_account(config)


def run_async(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async command; a TradectlError becomes a one-line message and exit code 2."""

    async def main() -> T:
        return await coro_fn()

    with guard():
        return asyncio.run(main())


def ledger_for(db: Database, settings: Settings) -> Ledger:
    return Ledger(
        db.engine, account=AccountId(settings.account), venue=VenueName(settings.venue.value)
    )


AllAccountsOpt = Annotated[
    bool,
    typer.Option(
        "--all-accounts", help="Every account's, not only TRADECTL_ACCOUNT's (and the global)."
    ),
]
StrategyOpt = Annotated[str | None, typer.Option("--strategy", help="Only this strategy.")]
SymbolOpt = Annotated[str | None, typer.Option("--symbol", help="Only this symbol.")]
ReasonOpt = Annotated[
    str | None,
    typer.Option("--reason", help="Why (required): recorded in the operator journal."),
]
ByOpt = Annotated[
    str | None,
    typer.Option("--by", help="Who acts, for the operator journal (default: the OS user)."),
]
GlobalOpt = Annotated[
    bool, typer.Option("--global", help="Every account on this ledger, not only this one.")
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Accept a strategy or symbol that TRADECTL_STRATEGIES_FILE does not name "
        "(e.g. one removed from the file whose orders remain).",
    ),
]
