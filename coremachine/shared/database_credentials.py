"""PostgreSQL credentials for DATABASE_URL, resolved at each new connection.

`DATABASE_AUTH` picks how the password is found:

- `password` (default): the password in DATABASE_URL; if the URL has none,
  the secret `database-password` from the secrets port (SECRETS_PROVIDER);
  if that is absent too, none at all (libpq then tries PGPASSWORD, .pgpass,
  or the server's trust rules, as on the embedded server);
- `entra`: a Microsoft Entra ID access token for Azure Database for
  PostgreSQL, used as the password of the Entra principal named in the URL.
  Tokens live about an hour and are renewed shortly before they expire.

Credentials are resolved per connection, not once at start-up, so that a
pool reconnecting hours later uses a rotated password or a fresh token:

    credentials = DatabaseCredentials(url, auth="entra")
    pool = AsyncConnectionPool(credentials.conninfo, kwargs=credentials.pool_kwargs())
    connection = await credentials.connect(autocommit=True)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

from psycopg.conninfo import conninfo_to_dict

from coremachine.shared.secrets import SecretsProvider

if TYPE_CHECKING:
    import psycopg

ENTRA_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
PASSWORD_SECRET = "database-password"
DEFAULT_REFRESH_MARGIN_SECONDS = 300.0

DatabaseAuth = Literal["password", "entra"]


class AccessTokenLike(Protocol):
    """What `get_token` returns (azure.core's AccessToken)."""

    @property
    def token(self) -> str: ...

    @property
    def expires_on(self) -> int: ...


class TokenCredential(Protocol):
    """The part of an `azure.identity.aio` credential used here."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessTokenLike: ...

    async def close(self) -> None: ...


class DatabaseCredentials:
    """Connection keyword arguments (the password) for a DATABASE_URL and DATABASE_AUTH."""

    def __init__(
        self,
        database_url: str,
        *,
        auth: DatabaseAuth | str = "password",
        secrets: SecretsProvider | None = None,
        credential: TokenCredential | None = None,
        refresh_margin_seconds: float = DEFAULT_REFRESH_MARGIN_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if auth not in ("password", "entra"):
            raise ValueError(f"unknown DATABASE_AUTH {auth!r}: expected 'password' or 'entra'")
        params = conninfo_to_dict(database_url)
        if auth == "entra":
            # Fail at start-up rather than at the first connection.
            if params.get("password"):
                raise ValueError("DATABASE_AUTH=entra: remove the password from DATABASE_URL")
            if not params.get("user"):
                raise ValueError(
                    "DATABASE_AUTH=entra: DATABASE_URL must name the Entra user "
                    "(the managed identity or group registered in PostgreSQL)"
                )
        self._url = database_url
        self._auth = auth
        self._url_has_password = bool(params.get("password"))
        self._url_has_sslmode = "sslmode" in params
        self._secrets = secrets
        self._credential = credential
        self._owns_credential = False
        self._margin = refresh_margin_seconds
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = 0.0
        self._token_lock = asyncio.Lock()

    @property
    def conninfo(self) -> str:
        """The connection string to give psycopg (the URL, unchanged)."""
        return self._url

    async def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments to add to conninfo for a new connection (e.g. the password)."""
        if self._auth == "entra":
            kwargs: dict[str, Any] = {"password": await self._entra_token()}
            if not self._url_has_sslmode:
                # Azure Database for PostgreSQL accepts tokens only over TLS.
                kwargs["sslmode"] = "require"
            return kwargs
        if self._url_has_password or self._secrets is None:
            return {}
        # Asked at every connection so a rotated password is picked up; wrap the
        # provider in CachedSecrets to bound the calls.
        password = await self._secrets.get(PASSWORD_SECRET)
        return {"password": password} if password else {}

    def pool_kwargs(self, **extra: Any) -> Callable[[], Awaitable[dict[str, Any]]]:
        """An async callable for psycopg_pool's `kwargs=`: fresh credentials plus extra."""

        async def resolve() -> dict[str, Any]:
            return {**extra, **await self.connect_kwargs()}

        return resolve

    async def connect(self, **kwargs: Any) -> psycopg.AsyncConnection[Any]:
        """Opens one connection with fresh credentials (kwargs go to AsyncConnection.connect)."""
        import psycopg

        return await psycopg.AsyncConnection.connect(
            self._url, **{**await self.connect_kwargs(), **kwargs}
        )

    async def close(self) -> None:
        """Closes the Azure credential if this object created it."""
        if self._owns_credential and self._credential is not None:
            await self._credential.close()

    async def _entra_token(self) -> str:
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        # One refresh at a time: a pool opening many connections at once must not
        # ask Entra ID for many tokens.
        async with self._token_lock:
            if self._token is None or self._clock() >= self._refresh_at:
                access = await self._get_credential().get_token(ENTRA_SCOPE)
                now = self._clock()
                lifetime = access.expires_on - now
                # Renew `margin` before expiry, or at half-life for short-lived tokens,
                # so that a connection never starts with a token about to lapse.
                self._refresh_at = access.expires_on - min(self._margin, lifetime / 2)
                self._token = access.token
            return self._token

    def _get_credential(self) -> TokenCredential:
        if self._credential is None:
            from azure.identity.aio import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
            self._owns_credential = True
        return self._credential
