// The Functions host's storage, the Key Vault for the shared secrets, and the container registry.
param location string
param storageName string
param keyVaultName string
param registryName string
param logAnalyticsId string

// The Functions host keeps its own state here (AzureWebJobsStorage__accountName); reached with Entra ID.
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: the pods reach it over its public endpoint with Entra ID tokens; a private endpoint in the cluster's network is the stricter option (docs/deploy-aks.md, Network)
  // checkov:skip=CKV_AZURE_206: zone-redundant (ZRS) is replication; the Functions host's state here is disposable
  // checkov:skip=CKV_AZURE_43: the name is storders<env> (storderdev, stordersprod), valid once the parameter is known
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_ZRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
  }
}

// notify-token-secret, correlation-id-secret and websocket-internal-secret, set by a documented step
// (docs/deploy-aks.md): a template would have to carry the values.
resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: the pods reach it over its public endpoint with Entra ID tokens; a private endpoint in the cluster's network is the stricter option (docs/deploy-aks.md, Network)
  // checkov:skip=CKV_AZURE_189: the pods reach it over its public endpoint with Entra ID tokens; a private endpoint in the cluster's network is the stricter option (docs/deploy-aks.md, Network)
  name: keyVaultName
  location: location
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
  }
}

resource keyVaultLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit'
  scope: keyVault
  properties: {
    workspaceId: logAnalyticsId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  // checkov:skip=CKV_AZURE_139: the delivery pipeline pushes from GitHub-hosted runners, whose addresses change
  // checkov:skip=CKV_AZURE_166: quarantine holds every image until a scanner marks it; none is part of this kit yet
  name: registryName
  location: location
  sku: {
    name: 'Premium'
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
    zoneRedundancy: 'Enabled'
    publicNetworkAccess: 'Enabled'
    policies: {
      retentionPolicy: {
        status: 'enabled'
        days: 30
      }
      trustPolicy: {
        status: 'enabled'
        type: 'Notary'
      }
    }
  }
}

output registryLoginServer string = registry.properties.loginServer
