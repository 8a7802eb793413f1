"""A ``venue_disconnected`` incident an engine left open (it was stopped while the venue was
away) is resolved by the next engine of the account once that one has every stream up and a
reconciliation pass behind it, against the built-in Binance-protocol simulator."""

from __future__ import annotations

from sqlalchemy.engine import URL

from engine.ledger.records import Incident
from tests.helpers import eventually
from tests.integration.test_venue_protection import running


async def test_a_disconnection_an_earlier_engine_left_open_is_resolved_once_reconnected(
    database_url: URL,
) -> None:
    toml = {"connection": {"disconnect_after": "1s"}}
    async with running(database_url, "leftover", toml=toml) as run:
        engine = run.engine

        async def disconnected() -> list[Incident]:
            return [
                i for i in await engine.ledger.incidents.read() if i.kind == "venue_disconnected"
            ]

        await run.sim.stop()
        [left] = await eventually(disconnected, message="the lost venue should open an incident")
    # that engine stopped while disconnected: nothing of it resolved the incident

    async with running(database_url, "leftover", toml=toml) as run:
        engine = run.engine

        async def resolved() -> Incident | None:
            for incident in await engine.ledger.incidents.read(open_only=False):
                if incident.id == left.id and incident.resolved_at is not None:
                    return incident
            return None

        incident = await eventually(resolved, message="the next engine should resolve it")
        assert incident.resolution_note == (
            "a later engine process connected every stream and reconciled"
        )
        assert engine.connection.may_trade()
