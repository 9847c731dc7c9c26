// One user-assigned identity per workload, with a federated credential for its Kubernetes service account:
// a pod of that service account exchanges its token for this identity's Entra ID tokens (workload identity).
param location string
param environmentName string
param workloads array
param oidcIssuerUrl string

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = [for workload in workloads: {
  name: 'id-orders-${workload.name}'
  location: location
  tags: {
    environment: environmentName
  }
}]

resource federation 'Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials@2023-01-31' = [for (workload, i) in workloads: {
  parent: identity[i]
  name: 'kubernetes'
  properties: {
    issuer: oidcIssuerUrl
    subject: 'system:serviceaccount:${workload.serviceAccount}'
    audiences: ['api://AzureADTokenExchange']
  }
}]

// [{name: 'intake', clientId, principalId}, …]: the overlays' service accounts take the client ids (azd prints them).
output identities array = [for (workload, i) in workloads: {
  name: workload.name
  clientId: identity[i].properties.clientId
  principalId: identity[i].properties.principalId
}]
