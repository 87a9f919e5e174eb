"""Blob-store adapters (the port is `shared.blobstore`).

- `local.LocalBlobStore`: a directory (BLOB_STORE=local, root BLOB_LOCAL_ROOT);
- `memory.MemoryBlobStore`: in memory, for unit tests;
- `azure.AzureBlobStore`: Azure Blob Storage (BLOB_STORE=azure, with
  AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL).

Adapters are imported on demand so the Azure SDK loads only where it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coremachine.shared.blobstore import BlobStore

DEFAULT_LOCAL_ROOT = ".data/blobs"


def open_blob_store(
    kind: str,
    *,
    local_root: str = DEFAULT_LOCAL_ROOT,
    connection_string: str | None = None,
    account_url: str | None = None,
) -> BlobStore:
    """Builds the adapter a composition root asked for (BLOB_STORE=local|azure|memory)."""
    if kind == "local":
        from coremachine.shared.blobstores.local import LocalBlobStore

        return LocalBlobStore(local_root)
    if kind == "memory":
        from coremachine.shared.blobstores.memory import MemoryBlobStore

        return MemoryBlobStore()
    if kind == "azure":
        from coremachine.shared.blobstores.azure import AzureBlobStore

        if connection_string:
            return AzureBlobStore.from_connection_string(connection_string)
        if account_url:
            return AzureBlobStore.from_account_url(account_url)
        raise ValueError(
            "BLOB_STORE=azure needs AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL"
        )
    raise ValueError(f"unknown BLOB_STORE {kind!r}: expected 'local' or 'azure'")
