"""Secrets providers (the port is `shared.secrets`).

- `env.EnvSecrets`: environment variables (SECRETS_PROVIDER=env, the default);
- `file.FileSecrets`: one file per secret, as Kubernetes mounts them
  (SECRETS_PROVIDER=file, directory SECRETS_DIR);
- `keyvault.KeyVaultSecrets`: Azure Key Vault (SECRETS_PROVIDER=keyvault,
  KEY_VAULT_URL, authenticated with DefaultAzureCredential).

Providers are imported on demand so the Azure SDK loads only where it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coremachine.shared.secrets import SecretsProvider


def open_secrets_provider(
    kind: str,
    *,
    env_prefix: str = "",
    secrets_dir: str | None = None,
    key_vault_url: str | None = None,
) -> SecretsProvider:
    """Builds the provider a composition root asked for (SECRETS_PROVIDER=env|file|keyvault)."""
    if kind == "env":
        from coremachine.shared.secrets_providers.env import EnvSecrets

        return EnvSecrets(prefix=env_prefix)
    if kind == "file":
        from coremachine.shared.secrets_providers.file import FileSecrets

        if not secrets_dir:
            raise ValueError("SECRETS_PROVIDER=file needs SECRETS_DIR")
        return FileSecrets(secrets_dir)
    if kind == "keyvault":
        from coremachine.shared.secrets_providers.keyvault import KeyVaultSecrets

        if not key_vault_url:
            raise ValueError("SECRETS_PROVIDER=keyvault needs KEY_VAULT_URL")
        return KeyVaultSecrets(key_vault_url)
    raise ValueError(f"unknown SECRETS_PROVIDER {kind!r}: expected 'env', 'file' or 'keyvault'")
