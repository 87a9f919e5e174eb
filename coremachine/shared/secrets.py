"""The secrets port: named secrets from the environment, files or Azure Key Vault.

Every provider implements `SecretsProvider` and passes the same contract suite
(tests/contract/test_secrets_contract.py). Services choose one with
`SECRETS_PROVIDER=env|file|keyvault` (see
`shared.secrets_providers.open_secrets_provider`) and usually wrap it in
`CachedSecrets`, so a hot path (a new database connection) does not call
Key Vault every time.

Secret names follow Key Vault's rules (letters, digits and hyphens, e.g.
`database-password`) so the same name works with every provider.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

_SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")


@runtime_checkable
class SecretsProvider(Protocol):
    """A read-only source of named secrets."""

    async def get(self, name: str) -> str | None:
        """Returns the secret's value, or None if there is no such secret."""

    async def close(self) -> None:
        """Releases connections."""


def validate_secret_name(name: str) -> str:
    """Returns name if every provider can hold it (Key Vault's rules), else raises ValueError."""
    if not isinstance(name, str) or not _SECRET_NAME.match(name):
        raise ValueError(f"invalid secret name {name!r}: use 1-127 letters, digits and hyphens")
    return name


class CachedSecrets(SecretsProvider):
    """Caches another provider's answers for ttl_seconds; one fetch per name at a time."""

    def __init__(
        self,
        inner: SecretsProvider,
        ttl_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._ttl = ttl_seconds
        self._clock = clock
        # name -> (value, expires_at). Absent secrets are cached too, so a
        # missing optional secret does not cost a remote call per lookup.
        self._cache: dict[str, tuple[str | None, float]] = {}
        self._in_flight: dict[str, asyncio.Task[str | None]] = {}

    async def get(self, name: str) -> str | None:
        """Returns the cached value while fresh, else fetches it (sharing concurrent fetches)."""
        validate_secret_name(name)
        cached = self._cache.get(name)
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        task = self._in_flight.get(name)
        if task is None:
            task = asyncio.ensure_future(self._fetch(name))
            self._in_flight[name] = task
        # shield: one caller giving up must not cancel the fetch the others wait for.
        return await asyncio.shield(task)

    async def _fetch(self, name: str) -> str | None:
        try:
            value = await self._inner.get(name)
            # Errors are not cached: the next caller tries again.
            self._cache[name] = (value, self._clock() + self._ttl)
            return value
        finally:
            del self._in_flight[name]

    def invalidate(self, name: str | None = None) -> None:
        """Forgets one cached secret (e.g. after an authentication failure), or all."""
        if name is None:
            self._cache.clear()
        else:
            self._cache.pop(name, None)

    async def close(self) -> None:
        """Closes the inner provider."""
        await self._inner.close()
