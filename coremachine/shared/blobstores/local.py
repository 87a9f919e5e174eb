"""Blob store on a local directory: the default when BLOB_STORE=local.

Layout under the root (`BLOB_LOCAL_ROOT`, default `.data/blobs`):

    <container>/<name>                   the blob's bytes, as is
    .sidecars/<container>/<hash>.json    content type and metadata
    .tmp/                                files being written

Container names cannot start with '.', so the two private directories never
clash with a container. Writes go to `.tmp/` first and are then renamed into
place, so a reader sees the old blob or the new one, never half of one. The
data and its sidecar are each replaced atomically but not together: a reader
racing a writer of the same name may briefly pair new bytes with old metadata.
Size, last-modified time and etag come from the data file itself, so they
always describe the bytes `get` returns.

Unlike Azure, a file system cannot hold both a blob `a` and a blob `a/b`;
such a `put` raises `BlobStoreError`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from coremachine.shared.blobstore import (
    DEFAULT_CONTENT_TYPE,
    BlobAlreadyExists,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    ContainerNotFound,
    InvalidBlobName,
    validate_blob_name,
    validate_container_name,
    validate_limit,
    validate_metadata,
)

_SIDECARS = ".sidecars"
_TMP = ".tmp"
# A concurrent delete prunes empty parent directories, which can remove the one
# a put has just created; the put then recreates it and tries again.
_PUT_ATTEMPTS = 5


class LocalBlobStore(BlobStore):
    """Blobs as files under root/container/name (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root)

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
        path = self._blob_path(container, name)
        sidecar: dict[str, object] = {
            "content_type": content_type or DEFAULT_CONTENT_TYPE,
            "metadata": validate_metadata(metadata),
        }
        return await asyncio.to_thread(
            self._put_sync, container, name, path, bytes(data), sidecar, overwrite
        )

    async def get(self, container: str, name: str) -> bytes:
        """Returns the blob's content; raises BlobNotFound or ContainerNotFound."""
        path = self._blob_path(container, name)
        return await asyncio.to_thread(self._get_sync, container, name, path)

    async def properties(self, container: str, name: str) -> BlobInfo:
        """Returns the blob's properties; raises BlobNotFound or ContainerNotFound."""
        path = self._blob_path(container, name)
        return await asyncio.to_thread(self._properties_sync, container, name, path)

    async def exists(self, container: str, name: str) -> bool:
        """Whether the blob exists (False also when the container does not)."""
        path = self._blob_path(container, name)
        return await asyncio.to_thread(_is_blob_file, path)

    async def delete(self, container: str, name: str) -> bool:
        """Deletes the blob; returns False if there was nothing to delete."""
        path = self._blob_path(container, name)
        return await asyncio.to_thread(self._delete_sync, container, name, path)

    async def list_blobs(
        self, container: str, *, prefix: str | None = None, limit: int | None = None
    ) -> AsyncIterator[BlobInfo]:
        """Yields the container's blobs in name order; raises ContainerNotFound."""
        validate_container_name(container)
        validate_limit(limit)
        infos = await asyncio.to_thread(self._list_sync, container, prefix or "", limit)
        for info in infos:
            yield info

    async def ensure_container(self, container: str) -> None:
        """Creates the container if it does not exist yet."""
        directory = self._root / validate_container_name(container)
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        """Nothing to release."""

    # -- paths -------------------------------------------------------------

    def _container_dir(self, container: str) -> Path:
        return self._root / validate_container_name(container)

    def _blob_path(self, container: str, name: str) -> Path:
        container_dir = self._container_dir(container)
        path = container_dir / validate_blob_name(name)
        # The name is already free of '..' and absolute parts; this also refuses
        # a symlink planted inside the store that points elsewhere.
        real_dir = os.path.realpath(container_dir)
        if not os.path.realpath(path).startswith(real_dir + os.sep):
            raise InvalidBlobName(f"blob name {name!r} resolves outside its container")
        return path

    def _sidecar_path(self, container: str, name: str) -> Path:
        # Sidecars are named by a hash of the blob name: mirroring the blob's path
        # would make 'a' (sidecar a.json) clash with 'a.json/b' (directory a.json).
        digest = hashlib.sha256(name.encode()).hexdigest()
        return self._root / _SIDECARS / container / digest[:2] / f"{digest}.json"

    def _require_container(self, container: str) -> None:
        if not self._container_dir(container).is_dir():
            raise ContainerNotFound(f"container {container!r} does not exist")

    # -- blocking implementations (run in a worker thread) -------------------

    def _put_sync(
        self,
        container: str,
        name: str,
        path: Path,
        data: bytes,
        sidecar: dict[str, object],
        overwrite: bool,
    ) -> BlobInfo:
        self._require_container(container)
        tmp_dir = self._root / _TMP
        tmp_dir.mkdir(exist_ok=True)
        data_tmp = _write_temp(tmp_dir, data)
        # Renaming keeps the inode and times, so this describes exactly our version
        # even if another writer replaces the blob right after us.
        stat = data_tmp.stat()
        sidecar_tmp = _write_temp(tmp_dir, json.dumps(sidecar).encode())
        sidecar_path = self._sidecar_path(container, name)
        try:
            sidecar_path.parent.mkdir(parents=True, exist_ok=True)
            for attempt in range(_PUT_ATTEMPTS):
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except (FileExistsError, NotADirectoryError):
                    raise _shape_conflict(name) from None
                try:
                    if overwrite:
                        os.replace(data_tmp, path)
                    else:
                        # link() refuses an existing target atomically, so of many
                        # concurrent writers exactly one wins.
                        os.link(data_tmp, path)
                    break
                except FileNotFoundError:
                    if attempt == _PUT_ATTEMPTS - 1:
                        raise
                except FileExistsError:
                    if path.is_dir():
                        raise _shape_conflict(name) from None
                    raise BlobAlreadyExists(
                        f"blob {name!r} already exists in {container!r}"
                    ) from None
                except (IsADirectoryError, NotADirectoryError):
                    raise _shape_conflict(name) from None
                except OSError as exc:
                    # Linux reports "target is a non-empty directory" this way.
                    if exc.errno == errno.ENOTEMPTY:
                        raise _shape_conflict(name) from None
                    raise
            os.replace(sidecar_tmp, sidecar_path)
        finally:
            for leftover in (data_tmp, sidecar_tmp):
                leftover.unlink(missing_ok=True)
        return self._info(container, name, stat, sidecar)

    def _get_sync(self, container: str, name: str, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._not_found(container, name) from None

    def _properties_sync(self, container: str, name: str, path: Path) -> BlobInfo:
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise self._not_found(container, name) from None
        if not path.is_file():
            raise self._not_found(container, name)
        return self._info(container, name, stat, self._read_sidecar(container, name))

    def _delete_sync(self, container: str, name: str, path: Path) -> bool:
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            self._require_container(container)
            return False
        self._sidecar_path(container, name).unlink(missing_ok=True)
        # Drop directories the blob leaves empty, so the name can later become a blob.
        _prune_empty_parents(path.parent, self._root / container)
        return True

    def _list_sync(self, container: str, prefix: str, limit: int | None) -> list[BlobInfo]:
        self._require_container(container)
        container_dir = self._root / container
        # Walk only the deepest directory the prefix names, when it is a safe path.
        start = container_dir
        if "/" in prefix:
            directory = prefix.rsplit("/", 1)[0]
            try:
                start = container_dir / validate_blob_name(directory)
            except InvalidBlobName:
                start = container_dir
        names: list[str] = []
        for dirpath, _dirnames, filenames in os.walk(start):
            for filename in filenames:
                full = Path(dirpath, filename)
                if full.is_symlink():
                    continue
                blob_name = full.relative_to(container_dir).as_posix()
                if blob_name.startswith(prefix):
                    names.append(blob_name)
        names.sort()
        infos: list[BlobInfo] = []
        for blob_name in names:
            if limit is not None and len(infos) >= limit:
                break
            try:
                stat = (container_dir / blob_name).stat()
            except FileNotFoundError:
                continue  # deleted while we were listing
            infos.append(
                self._info(container, blob_name, stat, self._read_sidecar(container, blob_name))
            )
        return infos

    def _read_sidecar(self, container: str, name: str) -> dict[str, object]:
        try:
            return json.loads(self._sidecar_path(container, name).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            # A file copied into the store by hand has no sidecar.
            return {}

    def _not_found(self, container: str, name: str) -> BlobStoreError:
        if not self._container_dir(container).is_dir():
            return ContainerNotFound(f"container {container!r} does not exist")
        return BlobNotFound(f"blob {name!r} not found in {container!r}")

    @staticmethod
    def _info(
        container: str, name: str, stat: os.stat_result, sidecar: Mapping[str, object]
    ) -> BlobInfo:
        metadata = sidecar.get("metadata")
        return BlobInfo(
            container=container,
            name=name,
            size=stat.st_size,
            content_type=str(sidecar.get("content_type") or DEFAULT_CONTENT_TYPE),
            last_modified=dt.datetime.fromtimestamp(stat.st_mtime_ns / 1e9, dt.UTC),
            # Every write renames a fresh file into place, so the inode changes
            # with each version even when the clock's granularity does not.
            etag=f'"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{stat.st_size:x}"',
            metadata=dict(metadata) if isinstance(metadata, dict) else {},
        )


def _write_temp(directory: Path, data: bytes) -> Path:
    path = directory / f"{uuid.uuid4().hex}.tmp"
    with open(path, "xb") as file:
        file.write(data)
        file.flush()
        # Without fsync a crash after the rename could leave an empty blob.
        os.fsync(file.fileno())
    return path


def _is_blob_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _prune_empty_parents(directory: Path, stop: Path) -> None:
    while directory != stop and stop in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return  # not empty (or already gone): an ancestor cannot be empty either
        directory = directory.parent


def _shape_conflict(name: str) -> BlobStoreError:
    return BlobStoreError(
        f"blob {name!r} clashes with another blob used as its folder (or vice versa); "
        "the local store cannot hold both 'a' and 'a/b'"
    )
