"""The blob-store port: named containers of immutable-by-default byte blobs.

Every adapter (local directory, in-memory, Azure Blob Storage) implements
`BlobStore` and passes the same contract suite
(tests/contract/test_blobstore_contract.py).

Semantics, as on Azure Blob Storage:
- a container must exist before blobs are written to it (`ensure_container`);
  every operation on a missing container raises `ContainerNotFound`, except
  `exists`, which answers False;
- `put` replaces a blob atomically; with `overwrite=False` it raises
  `BlobAlreadyExists` if the name is taken, and of many concurrent writers
  exactly one wins;
- `delete` is idempotent: it answers whether a blob was removed;
- `list_blobs` yields blobs in name order, optionally filtered by prefix and
  capped by limit;
- names are checked the same way by every adapter (`validate_container_name`,
  `validate_blob_name`) so a name that works locally also works on Azure, and
  a name can never escape a local store's root.

Services choose the adapter with `BLOB_STORE=local|azure` (see
`shared.blobstores.open_blob_store`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_BLOB_NAME_LENGTH = 1024

# Azure's rules: 3-63 characters, lower-case letters, digits and single hyphens,
# starting and ending with a letter or digit. Enforcing them everywhere also
# means a container name is always one safe path segment for the local store.
_CONTAINER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
# Azure metadata names must be valid C# identifiers; values travel as HTTP headers.
_METADATA_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BlobStoreError(Exception):
    """Base class of the blob-store errors."""


class BlobNotFound(BlobStoreError, LookupError):
    """The blob does not exist."""


class ContainerNotFound(BlobStoreError, LookupError):
    """The container does not exist (create it with `ensure_container`)."""


class BlobAlreadyExists(BlobStoreError):
    """`put(overwrite=False)` found the name taken."""


class InvalidBlobName(BlobStoreError, ValueError):
    """A container or blob name that not every adapter can store safely."""


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A blob's properties, without its content."""

    container: str
    name: str
    size: int
    content_type: str
    last_modified: dt.datetime  # timezone-aware (UTC)
    etag: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class BlobStore(Protocol):
    """A blob store with named containers (see the module docstring)."""

    async def put(
        self,
        container: str,
        name: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        overwrite: bool = True,
    ) -> BlobInfo:
        """Stores data under name; raises BlobAlreadyExists if overwrite is False and it exists."""

    async def get(self, container: str, name: str) -> bytes:
        """Returns the blob's content; raises BlobNotFound or ContainerNotFound."""

    async def properties(self, container: str, name: str) -> BlobInfo:
        """Returns the blob's properties; raises BlobNotFound or ContainerNotFound."""

    async def exists(self, container: str, name: str) -> bool:
        """Whether the blob exists (False also when the container does not)."""

    async def delete(self, container: str, name: str) -> bool:
        """Deletes the blob; returns False if there was nothing to delete."""

    def list_blobs(
        self, container: str, *, prefix: str | None = None, limit: int | None = None
    ) -> AsyncIterator[BlobInfo]:
        """Yields the container's blobs in name order; raises ContainerNotFound."""

    async def ensure_container(self, container: str) -> None:
        """Creates the container if it does not exist yet."""

    async def close(self) -> None:
        """Releases connections."""


def validate_container_name(container: str) -> str:
    """Returns the name if Azure accepts it as a container name, else raises InvalidBlobName."""
    if not isinstance(container, str) or not _CONTAINER_NAME.match(container):
        raise InvalidBlobName(
            f"invalid container name {container!r}: use 3-63 lower-case letters, digits "
            "and single hyphens, starting and ending with a letter or digit"
        )
    return container


def validate_blob_name(name: str) -> str:
    """Returns the name if it is a safe relative '/'-separated path, else raises InvalidBlobName."""
    if not isinstance(name, str) or not name:
        raise InvalidBlobName("a blob name must be a non-empty string")
    if len(name) > MAX_BLOB_NAME_LENGTH:
        raise InvalidBlobName(f"blob name longer than {MAX_BLOB_NAME_LENGTH} characters")
    # Backslashes and NUL would mean different things on different file systems;
    # empty, '.' and '..' segments would let a name escape or alias another.
    if "\\" in name or "\x00" in name:
        raise InvalidBlobName(f"invalid blob name {name!r}: no backslashes or NUL characters")
    if name.startswith("/"):
        raise InvalidBlobName(f"invalid blob name {name!r}: absolute names are not allowed")
    if any(segment in ("", ".", "..") for segment in name.split("/")):
        raise InvalidBlobName(f"invalid blob name {name!r}: no empty, '.' or '..' path segments")
    return name


def validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Returns a copy of metadata if Azure would accept it, else raises ValueError."""
    result: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not _METADATA_KEY.match(key):
            raise ValueError(f"invalid metadata key {key!r}: use letters, digits and '_'")
        if not isinstance(value, str) or not value.isascii():
            raise ValueError(f"metadata value for {key!r} must be an ASCII string")
        result[key] = value
    return result


def validate_limit(limit: int | None) -> int | None:
    """Returns limit if it is None or a non-negative int, else raises ValueError."""
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer, not {limit!r}")
    return limit
