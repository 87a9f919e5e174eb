"""Secrets from Azure Key Vault (SECRETS_PROVIDER=keyvault, KEY_VAULT_URL)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.secrets.aio import SecretClient

from coremachine.shared.secrets import SecretsProvider, validate_secret_name

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential


class KeyVaultSecrets(SecretsProvider):
    """Reads the latest version of each secret; wrap in CachedSecrets to limit calls."""

    def __init__(self, vault_url: str, credential: AsyncTokenCredential | None = None) -> None:
        # A credential we created is ours to close; one passed in belongs to the caller.
        self._owned_credential = None
        if credential is None:
            from azure.identity.aio import DefaultAzureCredential

            credential = self._owned_credential = DefaultAzureCredential()
        self._client = SecretClient(vault_url=vault_url, credential=credential)

    async def get(self, name: str) -> str | None:
        """Returns the secret's current value, or None if the vault has no such secret."""
        try:
            secret = await self._client.get_secret(validate_secret_name(name))
        except ResourceNotFoundError:
            return None
        return secret.value

    async def close(self) -> None:
        """Closes the client (and the credential, if this provider created it)."""
        await self._client.close()
        if self._owned_credential is not None:
            await self._owned_credential.close()
