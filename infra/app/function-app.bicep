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

@description('MODEL_API: responses or chat.')
param modelApi string

@description('AGENTS_PACKAGE; empty leaves the app default. So do the empty values of the settings below.')
param agentsPackage string

@description('WORKFLOWS_PACKAGE.')
param workflowsPackage string

@description('MAX_TOOL_ROUNDS.')
param maxToolRounds string

@description('MAX_REQUEST_BYTES.')
param maxRequestBytes string

@description('MAX_MESSAGE_CHARS.')
param maxMessageChars string

@description('MAX_SESSION_BYTES.')
param maxSessionBytes string

@description('MAX_HISTORY_MESSAGES.')
param maxHistoryMessages string

@description('HISTORY_COMPACTION.')
param historyCompaction string

@description('MAX_INPUT_TOKENS.')
param maxInputTokens string

@description('TURN_TIMEOUT_SECONDS.')
param turnTimeoutSeconds string

@description('TURN_LEASE_SECONDS.')
param turnLeaseSeconds string

@description('SESSION_CACHE_KB.')
param sessionCacheKb string

@description('IDEMPOTENCY_TTL_SECONDS.')
param idempotencyTtlSeconds string

@description('EVENTS_FLUSH_MS.')
param eventsFlushMs string

@description('EVENTS_POLL_MS.')
param eventsPollMs string

@description('EVENTS_TTL_SECONDS.')
param eventsTtlSeconds string

@description('BACKGROUND_QUEUE: the queue of background turns (on the host storage account).')
param backgroundQueue string

@description('MULTITASK.')
param multitask string

@description('ENABLE_SENSITIVE_DATA (development deployments only).')
param enableSensitiveData bool

@description('LOG_LEVEL: DEBUG, INFO, WARNING or ERROR.')
@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
param logLevel string

@description('MCP_SERVER_URL.')
param mcpServerUrl string

@description('Key Vault secret URI whose value becomes MCP_SERVER_HEADERS (a Key Vault reference); empty: none.')
param mcpServerHeadersSecretUri string

@description('MCP_TOOLS_REQUIRING_APPROVAL.')
param mcpToolsRequiringApproval string

@description('Python version of the Functions runtime.')
param pythonVersion string = '3.11'

// The Functions host's names for Python's levels (host.json logging.logLevel, overridden per app below).
var hostLogLevels = {
  DEBUG: 'Debug'
  INFO: 'Information'
  WARNING: 'Warning'
  ERROR: 'Error'
}

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
  AZURE_OPENAI_ENDPOINT: openAiEndpoint
  AZURE_OPENAI_DEPLOYMENT: openAiDeploymentName
  HISTORY_MODE: historyMode
  MODEL_API: modelApi
  // An empty value leaves the app's default: every setting the app reads is a parameter (an azd variable).
  AGENTS_PACKAGE: agentsPackage
  WORKFLOWS_PACKAGE: workflowsPackage
  MAX_TOOL_ROUNDS: maxToolRounds
  MAX_REQUEST_BYTES: maxRequestBytes
  MAX_MESSAGE_CHARS: maxMessageChars
  MAX_SESSION_BYTES: maxSessionBytes
  MAX_HISTORY_MESSAGES: maxHistoryMessages
  HISTORY_COMPACTION: historyCompaction
  MAX_INPUT_TOKENS: maxInputTokens
  TURN_TIMEOUT_SECONDS: turnTimeoutSeconds
  TURN_LEASE_SECONDS: turnLeaseSeconds
  SESSION_CACHE_KB: sessionCacheKb
  IDEMPOTENCY_TTL_SECONDS: idempotencyTtlSeconds
  EVENTS_FLUSH_MS: eventsFlushMs
  EVENTS_POLL_MS: eventsPollMs
  EVENTS_TTL_SECONDS: eventsTtlSeconds
  // Background turns: the queue trigger and the app reach the queue through AzureWebJobsStorage (the identity).
  BACKGROUND_QUEUE: backgroundQueue
  MULTITASK: multitask
  ENABLE_SENSITIVE_DATA: string(enableSensitiveData)
  LOG_LEVEL: logLevel
  AzureFunctionsJobHost__logging__logLevel__Function: hostLogLevels[logLevel]
  MCP_SERVER_URL: mcpServerUrl
  // The headers may hold an API key: a Key Vault reference, resolved by the platform with the identity.
  MCP_SERVER_HEADERS: empty(mcpServerHeadersSecretUri) ? '' : '@Microsoft.KeyVault(SecretUri=${mcpServerHeadersSecretUri})'
  MCP_TOOLS_REQUIRING_APPROVAL: mcpToolsRequiringApproval
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
    // Key Vault references (MCP_SERVER_HEADERS) resolve with the app's user-assigned identity.
    keyVaultReferenceIdentity: identityId
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

// Easy Auth: browsers without a session are redirected to the Entra ID sign-in (/.auth/login/aad, then
// /.auth/login/aad/callback) and get a session cookie kept in the token store; API clients send an Entra ID
// bearer token, which is validated and never redirected. One unauthenticatedClientAction serves both: a
// client with neither gets the redirect (a 302 for an API client, not a 401). The sign-in uses the ID
// token flow, so the app registration needs ID tokens enabled and no client secret is stored.
resource easyAuth 'Microsoft.Web/sites/config@2024-04-01' = if (enableEasyAuth) {
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
    }
    httpSettings: {
      requireHttps: true
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
        enabled: true
      }
      preserveUrlFragmentsForLogins: true
    }
  }
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
output url string = 'https://${functionApp.properties.defaultHostName}/api'
