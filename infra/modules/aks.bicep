// AKS: OIDC issuer and workload identity (every pod's Entra ID identity), the KEDA add-on (scales the
// processor on the orders queue), the Key Vault secrets provider, application routing (managed nginx),
// Azure CNI overlay with Cilium network policy, and zonal node pools.
param location string
param name string
param zones array
param nodeCount int
param nodeVmSize string
param logAnalyticsId string

@description('Address ranges allowed to reach the API server (your network, the runners that deploy); empty allows all.')
param apiServerAuthorizedIpRanges array = []

resource aksCluster 'Microsoft.ContainerService/managedClusters@2024-09-01' = {
  // checkov:skip=CKV_AZURE_172: rotation is on; the API takes the string 'true', which the check reads as not true
  name: name
  location: location
  identity: {
    type: 'SystemAssigned'
  }
  sku: {
    name: 'Base'
    tier: 'Standard'
  }
  properties: {
    dnsPrefix: name
    enableRBAC: true
    disableLocalAccounts: true
    aadProfile: {
      managed: true
      enableAzureRBAC: true
    }
    apiServerAccessProfile: {
      authorizedIPRanges: apiServerAuthorizedIpRanges
    }
    oidcIssuerProfile: {
      enabled: true
    }
    securityProfile: {
      workloadIdentity: {
        enabled: true
      }
      defender: {
        logAnalyticsWorkspaceResourceId: logAnalyticsId
        securityMonitoring: {
          enabled: true
        }
      }
    }
    workloadAutoScalerProfile: {
      keda: {
        enabled: true
      }
    }
    ingressProfile: {
      webAppRouting: {
        enabled: true
      }
    }
    addonProfiles: {
      azureKeyvaultSecretsProvider: {
        enabled: true
        config: {
          enableSecretRotation: 'true'
        }
      }
      kubeDashboard: {
        enabled: false
      }
      azurepolicy: {
        enabled: true
      }
      omsagent: {
        enabled: true
        config: {
          logAnalyticsWorkspaceResourceID: logAnalyticsId
        }
      }
    }
    networkProfile: {
      networkPlugin: 'azure'
      networkPluginMode: 'overlay'
      networkDataplane: 'cilium'
      networkPolicy: 'cilium'
    }
    autoUpgradeProfile: {
      upgradeChannel: 'patch'
      nodeOSUpgradeChannel: 'NodeImage'
    }
    agentPoolProfiles: [
      {
        name: 'system'
        mode: 'System'
        count: nodeCount
        vmSize: 'Standard_D2ds_v5'
        availabilityZones: zones
        osType: 'Linux'
        osSKU: 'AzureLinux'
        osDiskType: 'Ephemeral'
        maxPods: 50
        enableEncryptionAtHost: true
        nodeTaints: ['CriticalAddonsOnly=true:NoSchedule']
      }
      {
        name: 'apps'
        mode: 'User'
        count: nodeCount
        vmSize: nodeVmSize
        availabilityZones: zones
        osType: 'Linux'
        osSKU: 'AzureLinux'
        osDiskType: 'Ephemeral'
        maxPods: 50
        enableEncryptionAtHost: true
      }
    ]
  }
}

output oidcIssuerUrl string = aksCluster.properties.oidcIssuerProfile.issuerURL
output kubeletPrincipalId string = aksCluster.properties.identityProfile.kubeletidentity.objectId
