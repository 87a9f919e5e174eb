"""Claim check: large message payloads travel as blobs, messages carry a reference.

A Service Bus Standard message is limited to 256 KB including headers, so
payloads above `threshold_bytes` (default 192 KB, leaving room for
properties and framing) are stored in the blob store and replaced by a small
JSON reference:

    {"$claim_check": {"container": "...", "name": "...", "size": 123, "sha256": "..."}}

The blob name contains the payload's SHA-256, so a retried `wrap` rewrites
the same blob instead of leaking a new one, and `unwrap` verifies the bytes
it reads. Blobs are not deleted here: the job's clean-up (or a storage
lifecycle rule on the container) removes them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from coremachine.shared.blobstore import BlobNotFound, BlobStore, ContainerNotFound

DEFAULT_CONTAINER = "coremachine-payloads"
DEFAULT_THRESHOLD_BYTES = 192 * 1024
REFERENCE_KEY = "$claim_check"

_PREFIX = b'{"' + REFERENCE_KEY.encode() + b'"'
# A reference is tiny; anything longer is a payload, whatever it looks like.
_MAX_REFERENCE_BYTES = 4096
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_MAX_KEY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class _Reference:
    container: str
    name: str
    size: int
    sha256: str


class ClaimCheckError(Exception):
    """A reference whose payload cannot be fetched."""


class ClaimCheckIntegrityError(ClaimCheckError):
    """The fetched payload does not match the reference's size or SHA-256."""


def is_reference(data: bytes) -> bool:
    """Whether data is a claim-check reference produced by `ClaimCheck.wrap`."""
    return _parse_reference(data) is not None


class ClaimCheck:
    """Moves payloads larger than threshold_bytes to a blob store and back."""

    is_reference = staticmethod(is_reference)

    def __init__(
        self,
        store: BlobStore,
        container: str = DEFAULT_CONTAINER,
        threshold_bytes: int = DEFAULT_THRESHOLD_BYTES,
    ) -> None:
        self._store = store
        self._container = container
        self._threshold = threshold_bytes

    async def wrap(self, payload: bytes, key: str) -> bytes:
        """Returns payload as is when small enough, else stores it and returns a reference."""
        # A small payload that happens to look like a reference is stored too,
        # so that unwrap can never mistake it for one.
        if len(payload) <= self._threshold and not is_reference(payload):
            return payload
        digest = hashlib.sha256(payload).hexdigest()
        name = f"{_blob_prefix(key)}/{digest}"
        try:
            await self._store.put(
                self._container, name, payload, content_type="application/octet-stream"
            )
        except ContainerNotFound:
            # First use on a fresh account: create the container once, then retry.
            await self._store.ensure_container(self._container)
            await self._store.put(
                self._container, name, payload, content_type="application/octet-stream"
            )
        reference = {
            "container": self._container,
            "name": name,
            "size": len(payload),
            "sha256": digest,
        }
        return json.dumps({REFERENCE_KEY: reference}, separators=(",", ":")).encode()

    async def unwrap(self, data: bytes) -> bytes:
        """Returns the payload a reference points to (verified), or data itself."""
        reference = _parse_reference(data)
        if reference is None:
            return data
        container, name = reference.container, reference.name
        try:
            payload = await self._store.get(container, name)
        except (BlobNotFound, ContainerNotFound) as exc:
            raise ClaimCheckError(f"claim-check payload {container}/{name} is missing") from exc
        if len(payload) != reference.size:
            raise ClaimCheckIntegrityError(
                f"claim-check payload {container}/{name} has {len(payload)} bytes, "
                f"expected {reference.size}"
            )
        if hashlib.sha256(payload).hexdigest() != reference.sha256:
            raise ClaimCheckIntegrityError(
                f"claim-check payload {container}/{name} does not match its SHA-256"
            )
        return payload


def _parse_reference(data: bytes) -> _Reference | None:
    # Cheap checks first: unwrap runs on every message.
    if len(data) > _MAX_REFERENCE_BYTES or not data.startswith(_PREFIX):
        return None
    try:
        document = json.loads(data)
    except ValueError:
        return None
    if not isinstance(document, dict) or set(document) != {REFERENCE_KEY}:
        return None
    fields = document[REFERENCE_KEY]
    if not isinstance(fields, dict) or set(fields) != {"container", "name", "size", "sha256"}:
        return None
    container, name, size, sha256 = (
        fields["container"],
        fields["name"],
        fields["size"],
        fields["sha256"],
    )
    if not (
        isinstance(container, str)
        and isinstance(name, str)
        and isinstance(size, int)
        and not isinstance(size, bool)
        and isinstance(sha256, str)
    ):
        return None
    return _Reference(container, name, size, sha256)


def _blob_prefix(key: str) -> str:
    """Turns a caller's key (e.g. 'job/<id>/task/<id>') into safe blob-name segments."""
    segments = [
        _UNSAFE_KEY_CHARS.sub("_", segment)
        for segment in key.split("/")
        if segment not in ("", ".", "..")
    ]
    truncated = "/".join(segments)[:_MAX_KEY_LENGTH]
    # Truncation can leave an empty or dot-only last segment; drop it again.
    prefix = "/".join(s for s in truncated.split("/") if s not in ("", ".", ".."))
    return prefix or "payload"
