// Service Bus Premium with the two queues, with exactly the properties the app relies on: host.json's session
// trigger, the processor's retry budget per delivery (function_app/retries.py) and the local broker
// (localbus/default_config.json) all assume them; tests/deploy/test_infra.py compares the three.
param location string
param namespaceName string

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  sku: {
    name: 'Premium'
    tier: 'Premium'
    capacity: 1
  }
  properties: {
    disableLocalAuth: true // Entra ID only: the pods use workload identity, nobody holds a key
    zoneRedundant: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

// Accepted orders. Sessions: FIFO per customer (session id = customer id). Duplicate detection: the message
// id is the correlationId, so a resend of the same order is dropped. Not partitioned: intake sends orders of
// several customers in one batch, which a partitioned entity refuses.
resource orders 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: 'orders'
  properties: {
    requiresSession: true
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    maxDeliveryCount: 10
    lockDuration: 'PT1M'
    defaultMessageTimeToLive: 'P14D'
    deadLetteringOnMessageExpiration: true
    enablePartitioning: false
    enableBatchedOperations: true
  }
}

// Status events for the WebSocket service; competing consumers, no sessions.
resource orderStatus 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: 'order-status'
  properties: {
    requiresSession: false
    requiresDuplicateDetection: false
    maxDeliveryCount: 10
    lockDuration: 'PT1M'
    defaultMessageTimeToLive: 'P1D'
    deadLetteringOnMessageExpiration: false
    enablePartitioning: false
    enableBatchedOperations: true
  }
}

output namespaceId string = namespace.id
