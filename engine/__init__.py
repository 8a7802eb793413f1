"""tradectl: an asyncio trading engine with a durable Postgres ledger."""

__version__ = "0.1.0"
