// Least-privilege role assignments: each workload gets exactly what its functions use (docs/deploy-aks.md
// explains each). tests/deploy/test_infra.py checks the queue roles against which Deployment runs which
// function in k8s/.
param serviceBusName string
param redisName string
param storageName string
param keyVaultName string
param registryName string
param appInsightsName string
@description('[{name, clientId, principalId}] per workload (identities.bicep).')
param identities array
param kubeletPrincipalId string

// Built-in role definition ids.
var roles = {
  sender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39' // Azure Service Bus Data Sender
  receiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0' // Azure Service Bus Data Receiver
  owner: '090c5cfd-751d-490a-894a-3ce6f1109419' // Azure Service Bus Data Owner: KEDA reads queue runtime properties
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
}

var queueRoles = [
  { queue: 'orders', workload: 'intake', role: 'sender' } // submit_order
  { queue: 'orders', workload: 'processor', role: 'receiver' } // process_order, handle_dead_lettered_order
  { queue: 'order-status', workload: 'processor', role: 'sender' } // status events
  { queue: 'orders', workload: 'operations', role: 'sender' } // a replay sends the order again
  { queue: 'order-status', workload: 'operations', role: 'sender' } // and announces the new attempt
  { queue: 'order-status', workload: 'websocket', role: 'receiver' } // pushes
  { queue: 'orders', workload: 'keda', role: 'owner' } // the scaler's queue length
]
var functionsHosts = ['intake', 'processor', 'operations'] // the Functions host's own storage
var secretReaders = ['intake', 'websocket'] // notify-token, correlation-id and internal secrets
var redisUsers = ['intake', 'websocket'] // Accepted records and limits; socket holders
var telemetry = ['intake', 'processor', 'operations', 'websocket']

resource serviceBusRef 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusName
}

resource ordersQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = {
  parent: serviceBusRef
  name: 'orders'
}

resource statusQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = {
  parent: serviceBusRef
  name: 'order-status'
}

resource ordersQueueRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for grant in filter(queueRoles, g => g.queue == 'orders'): {
  name: guid(ordersQueue.id, grant.workload, grant.role)
  scope: ordersQueue
  properties: {
    principalId: filter(identities, identity => identity.name == grant.workload)[0].principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles[grant.role])
  }
}]

resource statusQueueRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for grant in filter(queueRoles, g => g.queue == 'order-status'): {
  name: guid(statusQueue.id, grant.workload, grant.role)
  scope: statusQueue
  properties: {
    principalId: filter(identities, identity => identity.name == grant.workload)[0].principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles[grant.role])
  }
}]

resource storageRef 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageName
}

resource storageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for workload in functionsHosts: {
  name: guid(storageRef.id, workload, 'storageBlobDataOwner')
  scope: storageRef
  properties: {
    principalId: filter(identities, identity => identity.name == workload)[0].principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
  }
}]

resource keyVaultRef 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource secretRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for workload in secretReaders: {
  name: guid(keyVaultRef.id, workload, 'keyVaultSecretsUser')
  scope: keyVaultRef
  properties: {
    principalId: filter(identities, identity => identity.name == workload)[0].principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
  }
}]

resource appInsightsRef 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource telemetryRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for workload in telemetry: {
  name: guid(appInsightsRef.id, workload, 'monitoringMetricsPublisher')
  scope: appInsightsRef
  properties: {
    principalId: filter(identities, identity => identity.name == workload)[0].principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}]

resource registryRef 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource kubeletPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registryRef.id, 'kubelet', 'acrPull')
  scope: registryRef
  properties: {
    principalId: kubeletPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPull)
  }
}

resource redisRef 'Microsoft.Cache/redisEnterprise@2025-04-01' existing = {
  name: redisName
}

resource redisDatabaseRef 'Microsoft.Cache/redisEnterprise/databases@2025-04-01' existing = {
  parent: redisRef
  name: 'default'
}

// The Redis user name of a token is the identity's object id (principal id), as the services send it.
resource redisAccess 'Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments@2025-04-01' = [for workload in redisUsers: {
  parent: redisDatabaseRef
  name: workload
  properties: {
    accessPolicyName: 'default'
    user: {
      objectId: filter(identities, identity => identity.name == workload)[0].principalId
    }
  }
}]
