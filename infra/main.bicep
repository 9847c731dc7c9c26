// The Azure environment the order-processing system runs in, one resource group per environment (dev, prod).
// Names follow the k8s overlays (k8s/overlays/<env>): tests/deploy/test_infra.py checks that they agree.
// Deploy: azd provision (azure.yaml), or
//   az deployment group create -g rg-orders-<env> -f infra/main.bicep -p @infra/main.<env>.parameters.json
targetScope = 'resourceGroup'

@allowed(['dev', 'prod'])
@description('The environment; it names every resource (sb-orders-<env>, …) and the Kubernetes namespace.')
param environmentName string

@description('Region of every resource.')
param location string = resourceGroup().location

@description('Availability zones for the zonal resources (AKS node pools, Redis, registry).')
param zones array = ['1', '2', '3']

@description('Object id of the Entra ID group that administers Azure SQL (creates the contained users, runs migrations).')
param sqlAdminGroupObjectId string

@description('Display name of that group.')
param sqlAdminGroupName string = 'orders-sql-admins'

@description('vCores of the Business Critical database.')
param sqlCapacity int = 4

@description('Azure Managed Redis SKU.')
param redisSku string = 'Balanced_B1'

@description('Nodes per AKS node pool (one pool for the system, one for the workloads).')
param nodeCount int = 3

@description('VM size of the workload node pool.')
param nodeVmSize string = 'Standard_D4ds_v5'

var namespace = 'orders-${environmentName}'
var names = {
  serviceBus: 'sb-orders-${environmentName}'
  sqlServer: 'sql-orders-${environmentName}'
  sqlDatabase: 'orders'
  redis: 'redis-orders-${environmentName}'
  storage: 'storders${environmentName}'
  keyVault: 'kv-orders-${environmentName}'
  registry: 'crorders${environmentName}'
  aks: 'aks-orders-${environmentName}'
  logAnalytics: 'log-orders-${environmentName}'
  appInsights: 'appi-orders-${environmentName}'
}

// One identity per workload, federated to its Kubernetes service account (k8s/base/serviceaccounts.yaml);
// KEDA's operator has its own, for reading the orders queue's length.
var workloads = [
  { name: 'intake', serviceAccount: '${namespace}:orders-intake' }
  { name: 'processor', serviceAccount: '${namespace}:orders-processor' }
  { name: 'operations', serviceAccount: '${namespace}:orders-operations' }
  { name: 'websocket', serviceAccount: '${namespace}:websocket' }
  { name: 'keda', serviceAccount: 'kube-system:keda-operator' }
]

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    logAnalyticsName: names.logAnalytics
    appInsightsName: names.appInsights
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  params: {
    location: location
    namespaceName: names.serviceBus
  }
}

module sql 'modules/sql.bicep' = {
  name: 'sql'
  params: {
    location: location
    serverName: names.sqlServer
    databaseName: names.sqlDatabase
    adminGroupName: sqlAdminGroupName
    adminGroupObjectId: sqlAdminGroupObjectId
    capacity: sqlCapacity
  }
}

module redis 'modules/redis.bicep' = {
  name: 'redis'
  params: {
    location: location
    name: names.redis
    sku: redisSku
    zones: zones
  }
}

module platform 'modules/platform.bicep' = {
  name: 'platform'
  params: {
    location: location
    storageName: names.storage
    keyVaultName: names.keyVault
    registryName: names.registry
    logAnalyticsId: monitoring.outputs.logAnalyticsId
  }
}

module aks 'modules/aks.bicep' = {
  name: 'aks'
  params: {
    location: location
    name: names.aks
    zones: zones
    nodeCount: nodeCount
    nodeVmSize: nodeVmSize
    logAnalyticsId: monitoring.outputs.logAnalyticsId
  }
}

module identities 'modules/identities.bicep' = {
  name: 'identities'
  params: {
    location: location
    environmentName: environmentName
    workloads: workloads
    oidcIssuerUrl: aks.outputs.oidcIssuerUrl
  }
}

module access 'modules/access.bicep' = {
  name: 'access'
  params: {
    serviceBusName: names.serviceBus
    redisName: names.redis
    storageName: names.storage
    keyVaultName: names.keyVault
    registryName: names.registry
    appInsightsName: names.appInsights
    identities: identities.outputs.identities
    kubeletPrincipalId: aks.outputs.kubeletPrincipalId
  }
  dependsOn: [serviceBus, redis, platform, monitoring]
}

output kubernetesNamespace string = namespace
output serviceBusNamespace string = '${names.serviceBus}.servicebus.windows.net'
output sqlServerHost string = sql.outputs.host
output redisHost string = redis.outputs.host
output registryLoginServer string = platform.outputs.registryLoginServer
output keyVaultName string = names.keyVault
output appInsightsConnectionString string = monitoring.outputs.appInsightsConnectionString
output identities array = identities.outputs.identities
output tenantId string = tenant().tenantId
