"""What every schema module shares: the one ``MetaData`` and the column helpers."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from sqlalchemy import Column, DateTime, MetaData, Numeric

metadata = MetaData()


def _in(column: str, values: Iterable[str | StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


def _ts(name: str, *, nullable: bool = False) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


def _num(name: str, *, nullable: bool = False) -> Column[object]:
    return Column(name, Numeric(asdecimal=True), nullable=nullable)
