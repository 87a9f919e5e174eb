"""Every PostgreSQL advisory-lock key the system uses, derived in one place.

Keys are 64-bit integers from a hash of a readable name, so two features can
never pick the same number by accident.
"""

from __future__ import annotations

import hashlib


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a readable name."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def migrations_lock(ledger: str) -> int:
    """Serializes migration runs that write one ledger table."""
    return lock_key(f"coremachine:migrations:{ledger}")
