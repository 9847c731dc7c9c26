// Azure SQL: Business Critical, zone redundant, Entra ID authentication only. The workloads' contained users
// (CREATE USER … FROM EXTERNAL PROVIDER) are created by a documented step, docs/deploy-aks.md: ARM cannot.
param location string
param serverName string
param databaseName string
param adminGroupName string
param adminGroupObjectId string
param capacity int

resource sqlServer 'Microsoft.Sql/servers@2023-08-01' = {
  // checkov:skip=CKV_AZURE_113: the pods reach it over its public endpoint with Entra ID tokens; a private endpoint in the cluster's network is the stricter option (docs/deploy-aks.md, Network)
  name: serverName
  location: location
  properties: {
    minimalTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    administrators: {
      administratorType: 'ActiveDirectory'
      azureADOnlyAuthentication: true
      login: adminGroupName
      sid: adminGroupObjectId
      tenantId: tenant().tenantId
      principalType: 'Group'
    }
  }
}

// AKS reaches the server over its public endpoint: allow Azure services (the 0.0.0.0 rule). A private
// endpoint in the cluster's virtual network is the stricter choice (docs/deploy-aks.md, "Network").
resource allowAzure 'Microsoft.Sql/servers/firewallRules@2023-08-01' = {
  parent: sqlServer
  name: 'AllowAllWindowsAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

resource auditing 'Microsoft.Sql/servers/auditingSettings@2023-08-01' = {
  parent: sqlServer
  name: 'default'
  properties: {
    state: 'Enabled'
    isAzureMonitorTargetEnabled: true
    retentionDays: 90
  }
}

resource threatProtection 'Microsoft.Sql/servers/securityAlertPolicies@2023-08-01' = {
  parent: sqlServer
  name: 'Default'
  properties: {
    state: 'Enabled'
    emailAccountAdmins: true
  }
}

resource sqlDatabase 'Microsoft.Sql/servers/databases@2023-08-01' = {
  parent: sqlServer
  name: databaseName
  location: location
  // checkov:skip=CKV_AZURE_26: alerts go to the subscription's admins (emailAccountAdmins on the server's policy)
  // checkov:skip=CKV_AZURE_27: emailAccountAdmins is enabled on the server's security alert policy above
  sku: {
    name: 'BC_Gen5'
    tier: 'BusinessCritical'
    family: 'Gen5'
    capacity: capacity
  }
  properties: {
    zoneRedundant: true
    readScale: 'Enabled'
    requestedBackupStorageRedundancy: 'Zone'
  }
}

// The same at the database, so the settings hold even if the server's are changed.
resource databaseAuditing 'Microsoft.Sql/servers/databases/auditingSettings@2023-08-01' = {
  parent: sqlDatabase
  name: 'default'
  properties: {
    state: 'Enabled'
    isAzureMonitorTargetEnabled: true
    retentionDays: 90
  }
}

resource databaseThreatProtection 'Microsoft.Sql/servers/databases/securityAlertPolicies@2023-08-01' = {
  parent: sqlDatabase
  name: 'Default'
  properties: {
    state: 'Enabled'
    emailAccountAdmins: true
  }
}

output host string = '${serverName}${environment().suffixes.sqlServerHostname}'
