"""What every line about an order carries: its account, strategy, decision and client order id.

One query on ``client_order_id`` (or ``decision_id``) then follows a decision from its
reservation to its fills, whichever task wrote the line. Work on one order runs in its own task
(a send, a lookup) or in a ``with bound_to(order)`` block; a task copies the context it is
created in, so an id bound for one order never reaches another order's lines.

Event names are ``<subject>.<past-tense fact>`` (``order.reserved``, ``fill.recorded``): see
docs/architecture.md, "Logs".
"""

from __future__ import annotations

import contextvars
from contextlib import AbstractContextManager
from typing import Any

import structlog

from engine.domain.orders import Order


def order_fields(order: Order) -> dict[str, str]:
    return {
        "account": order.account,
        "strategy": order.strategy_id,
        "decision_id": order.decision_id,
        "client_order_id": order.client_order_id,
    }


def bound_to(order: Order) -> AbstractContextManager[Any]:
    """The order's ids on every line logged inside the block (and in tasks created in it)."""
    return structlog.contextvars.bound_contextvars(**order_fields(order))


def order_context(order: Order) -> contextvars.Context:
    """A copy of the current context with the order's ids bound: for a task about the order
    (``create_task(..., context=order_context(order))``) and lines logged for it with
    ``.run``. What :func:`bound_to` gives, without walking, unbinding and restoring every
    bound variable around each order of a batch."""
    context = contextvars.copy_context()
    context.run(structlog.contextvars.bind_contextvars, **order_fields(order))
    return context
