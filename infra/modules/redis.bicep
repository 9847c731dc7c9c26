// Azure Managed Redis (Microsoft.Cache/redisEnterprise): the short-lived registries (Accepted records,
// submission limits, which WebSocket instance holds which order). Entra ID only, TLS, and no eviction: a
// registry key that Redis dropped to make room would silently lose a push or a limit, so a full cache must
// refuse writes (the app then fails open and logs) instead.
param location string
param name string
param sku string
param zones array

resource redisCluster 'Microsoft.Cache/redisEnterprise@2025-04-01' = {
  name: name
  location: location
  sku: {
    name: sku
  }
  zones: zones
  properties: {
    minimumTlsVersion: '1.2'
    highAvailability: 'Enabled'
  }
}

resource redisDatabase 'Microsoft.Cache/redisEnterprise/databases@2025-04-01' = {
  parent: redisCluster
  name: 'default'
  properties: {
    clientProtocol: 'Encrypted'
    port: 10000
    // One endpoint for clients that are not cluster-aware (redis-py's Redis, as the services use it).
    clusteringPolicy: 'EnterpriseCluster'
    evictionPolicy: 'NoEviction'
    accessKeysAuthentication: 'Disabled'
  }
}

output host string = redisCluster.properties.hostName
output port int = 10000
