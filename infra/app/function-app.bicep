// The function app on the Flex Consumption plan (FC1), running as the user-assigned identity.
// App setting names must match cosmos_history/settings.py SETTING_NAMES (tests/test_infra.py).

@description('Name of the Flex Consumption plan.')
param planName string

@description('Name of the function app.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the plan; the app also gets azd-service-name.')
param tags object

@description('Resource id of the user-assigned managed identity.')
param identityId string

@description('Client id of the user-assigned managed identity.')
param identityClientId string

@description('Name of the host storage account.')
param storageAccountName string

@description('Blob endpoint of the host storage account (https://<account>.blob.core.windows.net/).')
param storageBlobEndpoint string

@description('Blob container holding the deployment packages.')
param deploymentContainerName string

@description('Application Insights connection string (no secret: local auth is off).')
param applicationInsightsConnectionString string

@description('Cosmos DB account endpoint.')
param cosmosEndpoint string

@description('Cosmos DB database name.')
param cosmosDatabaseName string

@description('Cosmos DB container name.')
param cosmosContainerName string

@description('Azure OpenAI endpoint.')
param openAiEndpoint string

@description('Azure OpenAI deployment name.')
param openAiDeploymentName string

@description('Default history mode of new sessions: local or service.')
@allowed([
  'local'
  'service'
])
param historyMode string

@description('Sliding retention of session items in seconds; 0 keeps them until deleted.')
@minValue(0)
param sessionTtlSeconds int

@description('The agent serving requests that name none (DEFAULT_AGENT); empty keeps the app default.')
param defaultAgent string

@description('Memory of each instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

@description('Most instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

@description('true: Easy Auth (Entra ID) guards every request and the routes use anonymous auth level.')
param enableEasyAuth bool

@description('Application (client) id of the Entra ID app registration the tokens are issued for.')
param easyAuthClientId string

@description('Tenant id whose tokens Easy Auth accepts.')
param easyAuthTenantId string

@description('Python version of the Functions runtime.')
param pythonVersion string = '3.11'

var requiredSettings = {
  // Host storage through the identity: no connection string, no key.
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  PYTHON_ENABLE_INIT_INDEXING: '1'
  // Read by DefaultAzureCredential to pick the user-assigned identity.
  AZURE_CLIENT_ID: identityClientId
  COSMOS_ENDPOINT: cosmosEndpoint
  COSMOS_DATABASE: cosmosDatabaseName
  COSMOS_CONTAINER: cosmosContainerName
  MODEL_PROVIDER: 'azure_openai'
  MODEL_API: 'responses'
  AZURE_OPENAI_ENDPOINT: openAiEndpoint
  AZURE_OPENAI_DEPLOYMENT: openAiDeploymentName
  HISTORY_MODE: historyMode
  // With Easy Auth the platform authenticates every request and the app reads its principal header.
  HTTP_AUTH_LEVEL: enableEasyAuth ? 'anonymous' : 'function'
}
var ttlSettings = sessionTtlSeconds > 0 ? { SESSION_TTL_SECONDS: string(sessionTtlSeconds) } : {}
var agentSettings = empty(defaultAgent) ? {} : { DEFAULT_AGENT: defaultAgent }

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// Flex Consumption takes the worker runtime and version from functionAppConfig: FUNCTIONS_* settings
// must not be set here.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: union(requiredSettings, ttlSettings, agentSettings)
}

// Basic (publishing credentials) authentication off for FTP and the SCM site: deployments use Entra ID.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// Easy Auth: the platform validates an Entra ID bearer token on every request and answers 401 without
// one. Only token validation is configured, so no client secret is needed.
resource easyAuth 'Microsoft.Web/sites/config@2024-04-01' = if (enableEasyAuth) {
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: easyAuthClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${easyAuthTenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            easyAuthClientId
            'api://${easyAuthClientId}'
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
output url string = 'https://${functionApp.properties.defaultHostName}/api'
