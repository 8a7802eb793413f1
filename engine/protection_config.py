"""The venue protections of the strategies file: circuit breakers and the connection-loss time.

Optional tables; a field left out takes its ``TRADECTL_*`` setting (engine/config.py), so the
file only says where it differs::

    [breakers]                  # every endpoint class (default: TRADECTL_BREAKER_*)
    failure_threshold = 5       # failures in a row (5xx, timeouts, 429s, dropped streams): open
    recovery_timeout = "30s"    # open this long, then probes go through (half-open)
    success_threshold = 2       # probe successes in a row that close it again
    [breakers.orders]           # one endpoint class (orders, reads, streams): field by field
    failure_threshold = 3       # over [breakers]

    [connection]
    disconnect_after = "30s"    # a venue stream down this long: the account is disconnected
                                # (default TRADECTL_DISCONNECT_AFTER_S); what happens to each
                                # strategy's resting orders is its own on_disconnect

The engine resolves them against the settings with :meth:`ProtectionConfig.resolve`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from engine.config import Settings
from engine.domain.breaker import BreakerConfig
from engine.marketdata.bars import parse_interval


class EndpointClass(StrEnum):
    """What a venue request or stream is for; each class has its own breaker."""

    ORDERS = "orders"
    READS = "reads"
    STREAMS = "streams"


def _to_duration(value: Any) -> timedelta:
    if not isinstance(value, str):
        raise ValueError(f"must be a duration like '5s', '1m', '1h', got {value!r}")
    return parse_interval(value)


Duration = Annotated[timedelta, BeforeValidator(_to_duration)]


class BreakerFields(BaseModel):
    """One breaker's thresholds; ``None``: inherited."""

    model_config = ConfigDict(extra="forbid")

    failure_threshold: int | None = Field(default=None, ge=1)
    recovery_timeout: Duration | None = None
    success_threshold: int | None = Field(default=None, ge=1)


class BreakersTable(BreakerFields):
    """``[breakers]``: the fields for every class, and ``[breakers.<class>]`` over them."""

    orders: BreakerFields = Field(default_factory=BreakerFields)
    reads: BreakerFields = Field(default_factory=BreakerFields)
    streams: BreakerFields = Field(default_factory=BreakerFields)


class ConnectionTable(BaseModel):
    """``[connection]``."""

    model_config = ConfigDict(extra="forbid")

    disconnect_after: Duration | None = None


@dataclass(frozen=True, slots=True)
class VenueProtection:
    """What the engine runs with: one breaker config per endpoint class, and the loss time."""

    breakers: Mapping[EndpointClass, BreakerConfig]
    disconnect_after_s: float


@dataclass(frozen=True, slots=True)
class ProtectionConfig:
    """The file's ``[breakers]`` and ``[connection]``, not yet resolved against settings."""

    breakers: BreakersTable = field(default_factory=BreakersTable)
    connection: ConnectionTable = field(default_factory=ConnectionTable)

    def resolve(self, settings: Settings) -> VenueProtection:
        """Per class: ``[breakers.<class>]``, else ``[breakers]``, else the setting."""
        top = self.breakers
        configs: dict[EndpointClass, BreakerConfig] = {}
        for cls in EndpointClass:
            own: BreakerFields = getattr(top, cls.value)
            recovery = own.recovery_timeout or top.recovery_timeout
            configs[cls] = BreakerConfig(
                failure_threshold=_first(
                    own.failure_threshold,
                    top.failure_threshold,
                    settings.breaker_failure_threshold,
                ),
                recovery_timeout_s=(
                    settings.breaker_recovery_s if recovery is None else recovery.total_seconds()
                ),
                success_threshold=_first(
                    own.success_threshold,
                    top.success_threshold,
                    settings.breaker_success_threshold,
                ),
            )
        after = self.connection.disconnect_after
        return VenueProtection(
            breakers=MappingProxyType(configs),
            disconnect_after_s=(
                settings.disconnect_after_s if after is None else after.total_seconds()
            ),
        )


def _first(*values: int | None) -> int:
    for value in values:
        if value is not None:
            return value
    raise ValueError("no value")  # the last one is a setting: never None


def protection_from_settings(settings: Settings) -> VenueProtection:
    """The protections of an engine without a strategies file (tests, the settings alone)."""
    return ProtectionConfig().resolve(settings)
