"""Secrets from a directory with one file per secret, as Kubernetes mounts a Secret."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from coremachine.shared.secrets import SecretsProvider, validate_secret_name


class FileSecrets(SecretsProvider):
    """Reads `<directory>/<name>` at each call, so a rotated secret is seen at once."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._directory = Path(directory)

    async def get(self, name: str) -> str | None:
        """Returns the file's text without its trailing newline; None if there is no file."""
        # The name check also keeps the path inside the directory (no '/', no '..').
        path = self._directory / validate_secret_name(name)
        try:
            text = await asyncio.to_thread(path.read_text, encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError):
            return None
        # Files written by `echo` or editors end with a newline that is not part of the secret.
        return text.removesuffix("\n").removesuffix("\r")

    async def close(self) -> None:
        """Nothing to release."""
