// Log Analytics (container insights, audit logs) and Application Insights on it, with local (key)
// authentication off: telemetry is sent with Entra ID tokens (Monitoring Metrics Publisher, access.bicep).
param location string
param logAnalyticsName string
param appInsightsName string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output logAnalyticsId string = workspace.id
output appInsightsConnectionString string = appInsights.properties.ConnectionString
