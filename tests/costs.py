"""Counting what a piece of work costs the database: statements and commits (for the delivery
cost test and bench/claim_cost.py). Counts, not times, so the figures hold on a loaded machine."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from django.db import connection

WRITES = ("INSERT", "UPDATE", "DELETE")
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@dataclass
class Cost:
    statements: int = 0
    commits: int = 0


@contextlib.contextmanager
def counting():
    """Count the statements (transaction control excluded) and commits (committed atomic blocks
    plus writes in autocommit) this thread's default connection runs inside the block."""
    cost = Cost()

    def wrapper(execute, sql, params, many, context):
        verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if verb in TRANSACTION_CONTROL:
            return execute(sql, params, many, context)
        cost.statements += 1
        if verb in WRITES and not connection.in_atomic_block:
            cost.commits += 1
        return execute(sql, params, many, context)

    original = connection.commit

    def commit():
        cost.commits += 1
        return original()

    connection.commit = commit
    try:
        with connection.execute_wrapper(wrapper):
            yield cost
    finally:
        del connection.commit
