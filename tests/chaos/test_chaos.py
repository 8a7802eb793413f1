"""The crash/chaos suite: per seed, the engine killed and restarted under injected venue faults
must end with the ledger agreeing with the venue (see tests/chaos/harness.py for a run and
tests/chaos/invariants.py for what is checked)."""

from __future__ import annotations

import pytest

from tests.chaos.conftest import Campaign

pytestmark = pytest.mark.chaos


def test_seed_converges_to_the_venue_ground_truth(
    chaos_seed: int, chaos_campaign: Campaign
) -> None:
    outcome = chaos_campaign.outcomes["binance", chaos_seed]
    assert outcome.ok, outcome.describe()


def test_kalshi_seed_converges_to_the_venue_ground_truth_and_settlements(
    kalshi_seed: int, chaos_campaign: Campaign
) -> None:
    outcome = chaos_campaign.outcomes["kalshi", kalshi_seed]
    assert outcome.ok, outcome.describe()
    assert outcome.settlements >= 1, f"seed {kalshi_seed}: no market settled"
