"""Blob store on Azure Blob Storage (BLOB_STORE=azure), with the SDK's async clients.

Configured either by `AZURE_STORAGE_CONNECTION_STRING` (also what Azurite
uses in the tests) or by `AZURE_STORAGE_ACCOUNT_URL`, authenticated with
`DefaultAzureCredential` (managed identity in production).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobProperties, ContentSettings
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from coremachine.shared.blobstore import (
    DEFAULT_CONTENT_TYPE,
    BlobAlreadyExists,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    ContainerNotFound,
    validate_blob_name,
    validate_container_name,
    validate_limit,
    validate_metadata,
)

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

# The service returns at most 5,000 blobs per list page.
_MAX_PAGE = 5000


class AzureBlobStore(BlobStore):
    """Blobs in an Azure Storage account; container clients are created once and cached."""

    def __init__(
        self, service: BlobServiceClient, *, owned_credential: AsyncTokenCredential | None = None
    ) -> None:
        self._service = service
        # A credential we created is ours to close; one passed in belongs to the caller.
        self._owned_credential = owned_credential
        self._containers: dict[str, ContainerClient] = {}

    @classmethod
    def from_connection_string(cls, connection_string: str) -> AzureBlobStore:
        """A store for AZURE_STORAGE_CONNECTION_STRING (account key or SAS; Azurite)."""
        return cls(BlobServiceClient.from_connection_string(connection_string))

    @classmethod
    def from_account_url(
        cls, account_url: str, credential: AsyncTokenCredential | None = None
    ) -> AzureBlobStore:
        """A store for AZURE_STORAGE_ACCOUNT_URL, with DefaultAzureCredential unless given one."""
        owned = None
        if credential is None:
            from azure.identity.aio import DefaultAzureCredential

            credential = owned = DefaultAzureCredential()
        return cls(BlobServiceClient(account_url, credential=credential), owned_credential=owned)

    def _container(self, container: str) -> ContainerClient:
        client = self._containers.get(container)
        if client is None:
            client = self._service.get_container_client(validate_container_name(container))
            self._containers[container] = client
        return client

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
        blob = self._container(container).get_blob_client(validate_blob_name(name))
        checked_metadata = validate_metadata(metadata)
        content_type = content_type or DEFAULT_CONTENT_TYPE
        try:
            # overwrite=False sends If-None-Match: *, so the service picks one winner.
            response: dict[str, Any] = await blob.upload_blob(
                data,
                length=len(data),
                overwrite=overwrite,
                content_settings=ContentSettings(content_type=content_type),
                metadata=checked_metadata,
            )
        except ResourceExistsError:
            raise BlobAlreadyExists(f"blob {name!r} already exists in {container!r}") from None
        except ResourceNotFoundError as exc:
            raise _not_found(exc, container, name) from exc
        # The upload response carries etag and time: no second round trip needed.
        return BlobInfo(
            container=container,
            name=name,
            size=len(data),
            content_type=content_type,
            last_modified=response["last_modified"],
            etag=response["etag"],
            metadata=checked_metadata,
        )

    async def get(self, container: str, name: str) -> bytes:
        """Returns the blob's content; raises BlobNotFound or ContainerNotFound."""
        client = self._container(container)
        try:
            downloader = await client.download_blob(validate_blob_name(name))
            return await downloader.readall()
        except ResourceNotFoundError as exc:
            raise _not_found(exc, container, name) from exc

    async def properties(self, container: str, name: str) -> BlobInfo:
        """Returns the blob's properties; raises BlobNotFound or ContainerNotFound."""
        blob = self._container(container).get_blob_client(validate_blob_name(name))
        try:
            props = await blob.get_blob_properties()
        except ResourceNotFoundError as exc:
            raise _not_found(exc, container, name) from exc
        return _info(container, props)

    async def exists(self, container: str, name: str) -> bool:
        """Whether the blob exists (False also when the container does not)."""
        blob = self._container(container).get_blob_client(validate_blob_name(name))
        return await blob.exists()

    async def delete(self, container: str, name: str) -> bool:
        """Deletes the blob; returns False if there was nothing to delete."""
        client = self._container(container)
        try:
            await client.delete_blob(validate_blob_name(name))
        except ResourceNotFoundError as exc:
            error = _not_found(exc, container, name)
            if isinstance(error, ContainerNotFound):
                raise error from exc
            return False
        return True

    async def list_blobs(
        self, container: str, *, prefix: str | None = None, limit: int | None = None
    ) -> AsyncIterator[BlobInfo]:
        """Yields the container's blobs in name order; raises ContainerNotFound."""
        client = self._container(container)
        if validate_limit(limit) == 0:
            # Nothing to list, but a missing container is reported like elsewhere.
            if not await client.exists():
                raise ContainerNotFound(f"container {container!r} does not exist")
            return
        per_page = _MAX_PAGE if limit is None else max(1, min(limit, _MAX_PAGE))
        pages = client.list_blobs(
            name_starts_with=prefix or None, include=["metadata"], results_per_page=per_page
        )
        count = 0
        iterator = pages.__aiter__()
        while limit is None or count < limit:
            # Only the service call is guarded: an exception the consumer throws in
            # at `yield` must not be mistaken for a missing container.
            try:
                props = await iterator.__anext__()
            except StopAsyncIteration:
                return
            except ResourceNotFoundError as exc:
                raise ContainerNotFound(f"container {container!r} does not exist") from exc
            count += 1
            yield _info(container, props)

    async def ensure_container(self, container: str) -> None:
        """Creates the container if it does not exist yet."""
        with contextlib.suppress(ResourceExistsError):
            await self._container(container).create_container()

    async def close(self) -> None:
        """Closes the service client (its container clients share its transport)."""
        await self._service.close()
        if self._owned_credential is not None:
            await self._owned_credential.close()


def _info(container: str, props: BlobProperties) -> BlobInfo:
    return BlobInfo(
        container=container,
        name=props.name,
        size=props.size,
        content_type=props.content_settings.content_type or DEFAULT_CONTENT_TYPE,
        last_modified=props.last_modified,
        etag=props.etag,
        metadata=dict(props.metadata or {}),
    )


def _not_found(exc: ResourceNotFoundError, container: str, name: str) -> BlobStoreError:
    # The storage SDK copies the service's x-ms-error-code onto the exception.
    if getattr(exc, "error_code", None) == "ContainerNotFound":
        return ContainerNotFound(f"container {container!r} does not exist")
    return BlobNotFound(f"blob {name!r} not found in {container!r}")
