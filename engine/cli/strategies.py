"""Strategy kinds: list them with their params (``strategies``), scaffold one (``new-strategy``)."""

from __future__ import annotations

import json
import keyword
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from engine.cli._app import app, configured_settings, console, fail
from engine.cli.strategy_template import render_module, render_test, render_toml


def _config_kinds(path: Path) -> tuple[list[str], str | None]:
    """The kinds named in a strategies file (module paths included), or why it was not read."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return [], f"{path}: not read ({type(exc).__name__})"
    entries = raw.get("strategy")
    kinds = []
    for entry in entries if isinstance(entries, list) else []:
        kind = entry.get("kind") if isinstance(entry, dict) else None
        if isinstance(kind, str) and kind not in kinds:
            kinds.append(kind)
    return kinds, None


def _describe(kind: str) -> dict[str, Any]:
    from strategies.registry import UnknownKind, resolve

    try:
        resolved = resolve(kind)
    except UnknownKind as exc:
        return {"kind": kind, "error": str(exc), "params": []}
    return {
        "kind": kind,
        "origin": resolved.origin,
        "version": resolved.version,
        "summary": resolved.summary,
        "params": [p.as_json() for p in resolved.params()],
    }


@app.command("strategies")
def strategies_command(
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", help="Also describe this kind, e.g. my_pkg.mod:MyStrategy."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="Strategies TOML whose kinds to list too [default: the configured one]."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List every strategy kind with its params and defaults.

    The built-ins, the kinds installed packages register (entry point group
    ``tradectl.strategies``), the kinds the strategies file names (module paths such as
    ``my_pkg.my_module:MyStrategy``, importable through PYTHONPATH) and every ``--kind``.
    """
    from strategies.registry import known_kinds

    names = list(known_kinds())
    note = None
    path = config if config is not None else configured_settings().strategies_file
    if config is not None or path.exists():
        from_file, note = _config_kinds(path)
        names += [k for k in from_file if k not in names]
    names += [k for k in kind or [] if k not in names]
    described = [_describe(name) for name in names]
    if as_json:
        typer.echo(json.dumps(described, indent=2))
    else:
        _print_table(described)
        if note is not None:
            console.print(note, style="yellow", markup=False)
    if any("error" in d for d in described):
        raise typer.Exit(1)


def _print_table(described: list[dict[str, Any]]) -> None:
    table = Table(title="strategy kinds", show_lines=True)
    for column in ("kind", "version", "param", "type", "default", "bounds", "description"):
        table.add_column(column, overflow="fold")
    for d in described:
        if "error" in d:
            table.add_row(d["kind"], "", "", "", "", "", f"error: {d['error']}")
            continue
        params = d["params"] or [None]
        for i, p in enumerate(params):
            head = (d["kind"], d["version"]) if i == 0 else ("", "")
            if p is None:
                table.add_row(*head, "", "", "", "", d["summary"] or "(params not declared)")
                continue
            default = "(required)" if p["required"] else p["default"]
            description = p["description"] or (d["summary"] if i == 0 else "")
            table.add_row(*head, p["name"], p["type"], default, ", ".join(p["bounds"]), description)
    console.print(table)


_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@app.command("new-strategy")
def new_strategy(
    name: Annotated[str, typer.Argument(help="Module name, snake_case (e.g. breakout).")],
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to write it (created if missing).")
    ] = Path("."),
) -> None:
    """Scaffold a strategy: NAME.py (the strategy), test_NAME.py (its tests), NAME.toml (config).

    The strategy is yours, outside tradectl: put the directory on PYTHONPATH and name it in the
    strategies file as ``kind = "NAME:ClassName"`` (the TOML written says exactly that).
    """
    if not _NAME.match(name) or keyword.iskeyword(name):
        fail(f"NAME {name!r} must be a Python module name in snake_case (e.g. breakout)")
    if name in ("strategies", "engine", "test", "tests"):
        fail(f"NAME {name!r} would shadow a package of that name; pick another")
    class_name = "".join(part.capitalize() for part in name.split("_") if part) or "Strategy"
    files = {
        directory / f"{name}.py": render_module(name, class_name),
        directory / f"test_{name}.py": render_test(name, class_name),
        directory / f"{name}.toml": render_toml(name, class_name),
    }
    existing = [str(p) for p in files if p.exists()]
    if existing:
        fail(f"not overwriting {', '.join(existing)}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"--dir {directory}: cannot write: {exc.strerror}")
    for path in files:
        typer.echo(f"wrote {path}")
    where = directory.resolve()
    kind = f"{name}:{class_name}"
    typer.echo(
        f"next: PYTHONPATH={where} pytest {where / f'test_{name}.py'}\n"
        f"      PYTHONPATH={where} tradectl backtest --strategy {kind} --data BARS.csv\n"
        f"      add {where / f'{name}.toml'} to your strategies file (TRADECTL_STRATEGIES_FILE)"
    )
