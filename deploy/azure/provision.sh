#!/usr/bin/env bash
# Provisions CoreMachine's Azure resources with the az CLI. Idempotent: every step either
# checks for the resource first or is a create-or-update (PUT), so a re-run converges.
#
#   az login && az account set --subscription <id>
#   AKS_OIDC_ISSUER=$(az aks show -g <rg> -n <aks> --query oidcIssuerProfile.issuerUrl -o tsv) \
#     deploy/azure/provision.sh
#
# Every variable below can be overridden from the environment. Global names (server, Service
# Bus namespace, storage account, Key Vault) must be unique in Azure; the defaults match
# deploy/k8s/configmap.yaml and deploy/k8s/keda.yaml, so change those together.
set -euo pipefail

LOCATION="${LOCATION:-westeurope}"
RESOURCE_GROUP="${RESOURCE_GROUP:-rg-coremachine}"
PG_SERVER="${PG_SERVER:-psql-coremachine}"
PG_DATABASE="${PG_DATABASE:-coremachine}"
PG_VERSION="${PG_VERSION:-16}"
PG_TIER="${PG_TIER:-GeneralPurpose}"
PG_SKU="${PG_SKU:-Standard_D2ds_v5}"
PG_STORAGE_GB="${PG_STORAGE_GB:-64}"
# "0.0.0.0" admits Azure-hosted clients only (e.g. AKS egress); prefer VNet integration
# (--vnet/--subnet) for production and set this to "None".
PG_PUBLIC_ACCESS="${PG_PUBLIC_ACCESS:-0.0.0.0}"
SB_NAMESPACE="${SB_NAMESPACE:-sb-coremachine}"
JOBS_QUEUE="${JOBS_QUEUE:-jobs}"
TASKS_QUEUE="${TASKS_QUEUE:-tasks}"
# More worker pools (a queue each, space-separated), e.g. POOL_QUEUES="gpu io".
POOL_QUEUES="${POOL_QUEUES:-}"
read -r -a POOLS <<< "$POOL_QUEUES"
STORAGE_ACCOUNT="${STORAGE_ACCOUNT:-stcoremachine}"
BLOB_CONTAINER="${BLOB_CONTAINER:-coremachine}"
KEY_VAULT="${KEY_VAULT:-kv-coremachine}"
IDENTITY_NAME="${IDENTITY_NAME:-id-coremachine}"
KEDA_IDENTITY_NAME="${KEDA_IDENTITY_NAME:-id-coremachine-keda}"
# Federated credentials for AKS workload identity; skipped when AKS_OIDC_ISSUER is empty.
AKS_OIDC_ISSUER="${AKS_OIDC_ISSUER:-}"
K8S_NAMESPACE="${K8S_NAMESPACE:-coremachine}"
K8S_SERVICE_ACCOUNT="${K8S_SERVICE_ACCOUNT:-coremachine}"
KEDA_NAMESPACE="${KEDA_NAMESPACE:-keda}"
KEDA_SERVICE_ACCOUNT="${KEDA_SERVICE_ACCOUNT:-keda-operator}"

# Queue settings shared by `jobs` and `tasks` (ISO 8601 durations).
QUEUE_LOCK_DURATION="PT1M"
QUEUE_MAX_DELIVERY_COUNT=10
QUEUE_DUPLICATE_DETECTION_WINDOW="PT10M"
QUEUE_DEFAULT_TTL="P7D"

log() { printf '==> %s\n' "$*" >&2; }

# ensure_role ROLE PRINCIPAL_OBJECT_ID SCOPE: assign a role unless the assignment exists.
ensure_role() {
  local role="$1" principal="$2" scope="$3" count
  count=$(az role assignment list --assignee "$principal" --role "$role" --scope "$scope" \
    --query 'length(@)' --output tsv)
  if [[ "$count" == "0" ]]; then
    log "role '$role' -> $principal"
    # --assignee-principal-type avoids a Graph lookup that fails while a new identity replicates.
    az role assignment create --role "$role" --scope "$scope" \
      --assignee-object-id "$principal" --assignee-principal-type ServicePrincipal \
      --output none
  fi
}

# ensure_federated_credential IDENTITY NAME SUBJECT
ensure_federated_credential() {
  local identity="$1" name="$2" subject="$3"
  log "federated credential $name ($subject)"
  az identity federated-credential create --resource-group "$RESOURCE_GROUP" \
    --identity-name "$identity" --name "$name" --issuer "$AKS_OIDC_ISSUER" \
    --subject "$subject" --audiences api://AzureADTokenExchange --output none
}

log "resource group $RESOURCE_GROUP ($LOCATION)"
az group create --name "$RESOURCE_GROUP" --location "$LOCATION" --output none

# --- identities: the services' and KEDA's ------------------------------------------------
log "managed identities $IDENTITY_NAME, $KEDA_IDENTITY_NAME"
az identity create --resource-group "$RESOURCE_GROUP" --name "$IDENTITY_NAME" \
  --location "$LOCATION" --output none
az identity create --resource-group "$RESOURCE_GROUP" --name "$KEDA_IDENTITY_NAME" \
  --location "$LOCATION" --output none
IDENTITY_CLIENT_ID=$(az identity show --resource-group "$RESOURCE_GROUP" \
  --name "$IDENTITY_NAME" --query clientId --output tsv)
IDENTITY_PRINCIPAL_ID=$(az identity show --resource-group "$RESOURCE_GROUP" \
  --name "$IDENTITY_NAME" --query principalId --output tsv)
KEDA_CLIENT_ID=$(az identity show --resource-group "$RESOURCE_GROUP" \
  --name "$KEDA_IDENTITY_NAME" --query clientId --output tsv)
KEDA_PRINCIPAL_ID=$(az identity show --resource-group "$RESOURCE_GROUP" \
  --name "$KEDA_IDENTITY_NAME" --query principalId --output tsv)

# --- PostgreSQL flexible server, Entra authentication only ---------------------------------
if ! az postgres flexible-server show --resource-group "$RESOURCE_GROUP" \
  --name "$PG_SERVER" --output none 2>/dev/null; then
  log "PostgreSQL flexible server $PG_SERVER"
  az postgres flexible-server create --resource-group "$RESOURCE_GROUP" \
    --name "$PG_SERVER" --location "$LOCATION" --version "$PG_VERSION" \
    --tier "$PG_TIER" --sku-name "$PG_SKU" --storage-size "$PG_STORAGE_GB" \
    --microsoft-entra-auth Enabled --password-auth Disabled \
    --public-access "$PG_PUBLIC_ACCESS" --yes --output none
fi
az postgres flexible-server db create --resource-group "$RESOURCE_GROUP" \
  --server-name "$PG_SERVER" --database-name "$PG_DATABASE" --output none
# The services' identity is the server's Entra administrator: the state service runs the
# migrations (DDL). The database user name is the identity's name.
if [[ "$(az postgres flexible-server microsoft-entra-admin list --resource-group "$RESOURCE_GROUP" \
  --server-name "$PG_SERVER" --query "[?objectId=='$IDENTITY_PRINCIPAL_ID'] | length(@)" \
  --output tsv)" == "0" ]]; then
  log "Entra administrator $IDENTITY_NAME on $PG_SERVER"
  az postgres flexible-server microsoft-entra-admin create --resource-group "$RESOURCE_GROUP" \
    --server-name "$PG_SERVER" --display-name "$IDENTITY_NAME" \
    --object-id "$IDENTITY_PRINCIPAL_ID" --type ServicePrincipal --output none
fi

# --- Service Bus: Standard namespace, queues jobs, tasks and one per worker pool ------------
if ! az servicebus namespace show --resource-group "$RESOURCE_GROUP" \
  --name "$SB_NAMESPACE" --output none 2>/dev/null; then
  log "Service Bus namespace $SB_NAMESPACE"
  az servicebus namespace create --resource-group "$RESOURCE_GROUP" --name "$SB_NAMESPACE" \
    --location "$LOCATION" --sku Standard --output none
fi
for queue in "$JOBS_QUEUE" "$TASKS_QUEUE" "${POOLS[@]}"; do
  # A create-or-update: re-running resets the settings to these values.
  log "queue $queue"
  az servicebus queue create --resource-group "$RESOURCE_GROUP" \
    --namespace-name "$SB_NAMESPACE" --name "$queue" \
    --lock-duration "$QUEUE_LOCK_DURATION" \
    --max-delivery-count "$QUEUE_MAX_DELIVERY_COUNT" \
    --duplicate-detection true \
    --duplicate-detection-history-time-window "$QUEUE_DUPLICATE_DETECTION_WINDOW" \
    --default-message-time-to-live "$QUEUE_DEFAULT_TTL" \
    --enable-dead-lettering-on-message-expiration true \
    --output none
done
SB_ID=$(az servicebus namespace show --resource-group "$RESOURCE_GROUP" \
  --name "$SB_NAMESPACE" --query id --output tsv)
TASKS_QUEUE_ID=$(az servicebus queue show --resource-group "$RESOURCE_GROUP" \
  --namespace-name "$SB_NAMESPACE" --name "$TASKS_QUEUE" --query id --output tsv)

# --- Storage account and blob container --------------------------------------------------
log "storage account $STORAGE_ACCOUNT, container $BLOB_CONTAINER"
az storage account create --resource-group "$RESOURCE_GROUP" --name "$STORAGE_ACCOUNT" \
  --location "$LOCATION" --sku Standard_LRS --kind StorageV2 --min-tls-version TLS1_2 \
  --allow-blob-public-access false --allow-shared-key-access false --output none
# Through ARM (container-rm), so the caller needs no data-plane role on the account.
az storage container-rm create --resource-group "$RESOURCE_GROUP" \
  --storage-account "$STORAGE_ACCOUNT" --name "$BLOB_CONTAINER" --output none
STORAGE_ID=$(az storage account show --resource-group "$RESOURCE_GROUP" \
  --name "$STORAGE_ACCOUNT" --query id --output tsv)

# --- Key Vault (RBAC authorisation) ------------------------------------------------------
if ! az keyvault show --resource-group "$RESOURCE_GROUP" --name "$KEY_VAULT" \
  --output none 2>/dev/null; then
  if [[ "$(az keyvault list-deleted --query "[?name=='$KEY_VAULT'] | length(@)" \
    --output tsv)" != "0" ]]; then
    log "recovering soft-deleted Key Vault $KEY_VAULT"
    az keyvault recover --name "$KEY_VAULT" --output none
  else
    log "Key Vault $KEY_VAULT"
    az keyvault create --resource-group "$RESOURCE_GROUP" --name "$KEY_VAULT" \
      --location "$LOCATION" --enable-rbac-authorization true --output none
  fi
fi
KEY_VAULT_ID=$(az keyvault show --resource-group "$RESOURCE_GROUP" --name "$KEY_VAULT" \
  --query id --output tsv)

# --- role assignments ----------------------------------------------------------------------
ensure_role "Azure Service Bus Data Sender" "$IDENTITY_PRINCIPAL_ID" "$SB_ID"
ensure_role "Azure Service Bus Data Receiver" "$IDENTITY_PRINCIPAL_ID" "$SB_ID"
ensure_role "Storage Blob Data Contributor" "$IDENTITY_PRINCIPAL_ID" "$STORAGE_ID"
ensure_role "Key Vault Secrets User" "$IDENTITY_PRINCIPAL_ID" "$KEY_VAULT_ID"
# KEDA reads the queue's message count, which needs the Manage right: Data Owner, scoped to
# the queues it scales workers on (tasks and the pools') only.
ensure_role "Azure Service Bus Data Owner" "$KEDA_PRINCIPAL_ID" "$TASKS_QUEUE_ID"
for pool in "${POOLS[@]}"; do
  POOL_QUEUE_ID=$(az servicebus queue show --resource-group "$RESOURCE_GROUP" \
    --namespace-name "$SB_NAMESPACE" --name "$pool" --query id --output tsv)
  ensure_role "Azure Service Bus Data Owner" "$KEDA_PRINCIPAL_ID" "$POOL_QUEUE_ID"
done

# --- AKS workload identity -----------------------------------------------------------------
if [[ -n "$AKS_OIDC_ISSUER" ]]; then
  ensure_federated_credential "$IDENTITY_NAME" "fc-coremachine" \
    "system:serviceaccount:${K8S_NAMESPACE}:${K8S_SERVICE_ACCOUNT}"
  ensure_federated_credential "$KEDA_IDENTITY_NAME" "fc-keda-operator" \
    "system:serviceaccount:${KEDA_NAMESPACE}:${KEDA_SERVICE_ACCOUNT}"
else
  log "AKS_OIDC_ISSUER not set: skipping federated credentials"
fi

cat <<SUMMARY
Provisioned. Put these in deploy/k8s:
  serviceaccount.yaml  azure.workload.identity/client-id: ${IDENTITY_CLIENT_ID}
  keda.yaml            identityId: ${KEDA_CLIENT_ID}   (and the KEDA Helm release's clientId)
  configmap.yaml       SERVICEBUS_NAMESPACE: ${SB_NAMESPACE}.servicebus.windows.net
                       AZURE_STORAGE_ACCOUNT_URL: https://${STORAGE_ACCOUNT}.blob.core.windows.net
                       KEY_VAULT_URL: https://${KEY_VAULT}.vault.azure.net/
  Secret coremachine-secrets:
    DATABASE_URL=postgresql://${IDENTITY_NAME}@${PG_SERVER}.postgres.database.azure.com:5432/${PG_DATABASE}?sslmode=require
SUMMARY
