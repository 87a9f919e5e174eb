"""API keys and roles, shared by the HTTP and gRPC surfaces.

Keys are provisioned through the secrets port as one secret (`api-keys`)
holding JSON `[{"name": "ci", "role": "submitter", "sha256": "<hex>"}]`.
Only the SHA-256 of a key is stored, so the secret can be read by operators
without revealing usable keys. Roles are ordered: reader < submitter < admin.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from coremachine.shared.errors import PermissionDenied, Unauthenticated
from coremachine.shared.secrets import SecretsProvider

log = logging.getLogger(__name__)

# Longer values are not keys anyone was given; refusing them early keeps a
# hostile header from costing a hash over megabytes.
_MAX_KEY_CHARS = 512
_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)


class Role(IntEnum):
    """What a key may do; a higher role may do everything a lower one may."""

    READER = 1
    SUBMITTER = 2
    ADMIN = 3


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request (the key's name, never the key)."""

    name: str
    role: Role


class _KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: str
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")


_ENTRIES = TypeAdapter(list[_KeyEntry])


def hash_key(key: str) -> str:
    """The stored form of a key: SHA-256 hex of its UTF-8 bytes."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_api_keys(text: str) -> dict[str, Principal]:
    """Parses the `api-keys` secret into {sha256 hex: principal}; raises ValueError."""
    try:
        entries = _ENTRIES.validate_json(text)
    except ValidationError as exc:
        # The message names positions and fields, never values (they may be keys pasted by mistake).
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ValueError(f"api-keys secret is not a valid key list ({where})") from None
    keys: dict[str, Principal] = {}
    for entry in entries:
        try:
            role = Role[entry.role.upper()]
        except KeyError:
            raise ValueError(
                f"api-keys entry {entry.name!r}: role must be reader, submitter or admin"
            ) from None
        keys[entry.sha256.lower()] = Principal(entry.name, role)
    return keys


def key_from(authorization: str | None, api_key: str | None) -> str | None:
    """The key a caller presented in `Authorization: Bearer <key>` or `X-API-Key`."""
    if api_key:
        return api_key.strip() or None
    if authorization and (match := _BEARER.match(authorization)):
        return match.group(1)
    return None


class Authenticator(Protocol):
    """Decides who a key belongs to and whether that role suffices."""

    async def authenticate(self, key: str | None, required: Role) -> Principal:
        """Returns the caller, or raises Unauthenticated / PermissionDenied."""


def _authorize(principal: Principal, required: Role) -> Principal:
    if principal.role < required:
        raise PermissionDenied(
            f"this operation needs the {required.name.lower()} role;"
            f" key {principal.name!r} has {principal.role.name.lower()}"
        )
    return principal


class ApiKeyAuthenticator(Authenticator):
    """Checks keys against the hashed list in the secrets port (cached by the provider)."""

    def __init__(self, secrets: SecretsProvider, secret_name: str = "api-keys") -> None:
        self._secrets = secrets
        self._secret_name = secret_name
        self._raw: str | None = None
        self._keys: dict[str, Principal] = {}

    async def load(self) -> int:
        """Reads the key list now; raises ValueError if it is missing or malformed (start-up)."""
        raw = await self._secrets.get(self._secret_name)
        if raw is None:
            raise ValueError(
                f"no API keys: secret {self._secret_name!r} is not set"
                " (or set GATEWAY_AUTH_DISABLED=true for local development)"
            )
        self._keys, self._raw = parse_api_keys(raw), raw
        return len(self._keys)

    async def _current(self) -> dict[str, Principal]:
        try:
            raw = await self._secrets.get(self._secret_name)
        except Exception:
            # The secret store being briefly unreachable must not lock everyone out.
            log.exception("could not refresh the API keys; using the last known list")
            return self._keys
        if raw != self._raw:
            try:
                self._keys = parse_api_keys(raw) if raw is not None else {}
            except ValueError:
                log.exception("the API keys secret is malformed; using the last known list")
                return self._keys
            self._raw = raw
        return self._keys

    async def authenticate(self, key: str | None, required: Role) -> Principal:
        if not key:
            raise Unauthenticated(
                "an API key is required (Authorization: Bearer <key> or X-API-Key)"
            )
        principal = None
        if len(key) <= _MAX_KEY_CHARS:
            # A dict lookup by hash: the attacker does not control the hash, so
            # the lookup's timing reveals nothing useful about stored keys.
            principal = (await self._current()).get(hash_key(key))
        if principal is None:
            raise Unauthenticated("invalid API key")
        return _authorize(principal, required)


class DisabledAuthenticator(Authenticator):
    """Local development without keys (GATEWAY_AUTH_DISABLED=true): everyone is admin."""

    async def authenticate(self, key: str | None, required: Role) -> Principal:
        return Principal("anonymous (auth disabled)", Role.ADMIN)
