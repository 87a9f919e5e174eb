"""Secrets from environment variables: `db-password` is read from `DB_PASSWORD`."""

from __future__ import annotations

import os
from collections.abc import Mapping

from coremachine.shared.secrets import SecretsProvider, validate_secret_name


def env_var_name(name: str, prefix: str = "") -> str:
    """The variable that holds secret name: prefix + upper case, '-' -> '_'."""
    return prefix + validate_secret_name(name).upper().replace("-", "_")


class EnvSecrets(SecretsProvider):
    """Reads secrets from the environment at each call, so tests may change it."""

    def __init__(self, prefix: str = "", environ: Mapping[str, str] | None = None) -> None:
        self._prefix = prefix
        self._environ = os.environ if environ is None else environ

    async def get(self, name: str) -> str | None:
        """Returns the variable's value; None if it is unset or empty."""
        # Compose files often declare `FOO=` to mean "not set"; treat it so.
        return self._environ.get(env_var_name(name, self._prefix)) or None

    async def close(self) -> None:
        """Nothing to release."""
