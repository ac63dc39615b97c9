"""Housekeeping: pruning old deliveries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from models import Delivery
from models.base import utcnow
from models.deliveries import TERMINAL


def prune_deliveries(engine: Engine, older_than: timedelta, batch: int = 1000,
                     progress: Callable[[int], None] | None = None) -> int:
    """Delete finished deliveries older than the cut-off in batches; returns how many."""
    cutoff = utcnow() - older_than
    total = 0
    while True:
        ids = select(Delivery.id).where(Delivery.received_at < cutoff, Delivery.state.in_(TERMINAL)).limit(batch)
        with engine.begin() as conn:
            n = conn.execute(delete(Delivery).where(Delivery.id.in_(ids.scalar_subquery()))).rowcount
        total += n
        if n < batch:
            return total
        if progress:
            progress(total)
