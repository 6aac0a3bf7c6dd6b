// Entry point for `azd up` / `az deployment sub create`: creates the resource group and every
// resource of the app in it through the small modules under app/. No module comes from a registry,
// so the whole template can be checked offline (see README.md).
targetScope = 'subscription'

@description('Name of the azd environment; prefixes the resource group and seeds resource names.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Azure region of every resource (it must offer Flex Consumption).')
@minLength(1)
param location string

@description('Object id of the deploying developer, granted the Cosmos DB and Azure OpenAI data roles; empty grants none.')
param principalId string = ''

@description('Kind of principalId: User for a person, ServicePrincipal for a CI identity.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param principalType string = 'User'

@description('true: serverless Cosmos DB account. false: provisioned autoscale throughput.')
param cosmosServerless bool = true

@description('Maximum autoscale RU/s of the container when cosmosServerless is false.')
@minValue(1000)
param cosmosAutoscaleMaxThroughput int = 1000

@description('Cosmos DB database name (COSMOS_DATABASE).')
@minLength(1)
param cosmosDatabaseName string = 'conversations'

@description('Cosmos DB container name (COSMOS_CONTAINER).')
@minLength(1)
param cosmosContainerName string = 'user-sessions'

@description('Sliding retention of session items in seconds (SESSION_TTL_SECONDS); 0 keeps them until deleted.')
@minValue(0)
param sessionTtlSeconds int = 0

@description('Default history mode of new sessions (HISTORY_MODE).')
@allowed([
  'local'
  'service'
])
param historyMode string = 'local'

@description('The agent serving requests that name none (DEFAULT_AGENT, a module of agents/); empty keeps assistant.')
param defaultAgent string = ''

@description('Region of the Azure OpenAI account; empty uses location.')
param openAiLocation string = ''

@description('Chat model to deploy.')
param openAiModelName string = 'gpt-4o-mini'

@description('Version of the chat model.')
param openAiModelVersion string = '2024-07-18'

@description('Deployment SKU of the model: GlobalStandard, DataZoneStandard or Standard.')
param openAiDeploymentSku string = 'GlobalStandard'

@description('Capacity of the model deployment in thousands of tokens per minute.')
@minValue(1)
param openAiDeploymentCapacity int = 30

@description('Name of the model deployment (AZURE_OPENAI_DEPLOYMENT); empty uses the model name.')
param openAiDeploymentName string = ''

@description('Memory of each function app instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the function app scales out to (caps cost and Cosmos DB load).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('true: Easy Auth with Entra ID in front of the app (needs easyAuthClientId).')
param enableEasyAuth bool = false

@description('Application (client) id of the Entra ID app registration whose tokens Easy Auth accepts.')
param easyAuthClientId string = ''

// The app's own settings (cosmos_history/settings.py). Each is an azd variable of the same name in
// main.parameters.json; an empty value leaves the app's default (the README's settings table).
@description('MODEL_API: responses (default) or chat (Chat Completions; local history mode only).')
@allowed([
  'responses'
  'chat'
])
param modelApi string = 'responses'

@description('AGENTS_PACKAGE: the Python package whose modules are the agents; empty: agents.')
param agentsPackage string = ''

@description('WORKFLOWS_PACKAGE: the Python package whose modules are the workflows; empty: workflows.')
param workflowsPackage string = ''

@description('MAX_TOOL_ROUNDS: most model round trips with tool calls in one turn; empty: 8.')
param maxToolRounds string = ''

@description('MAX_REQUEST_BYTES: largest accepted request body; empty: 65536.')
param maxRequestBytes string = ''

@description('MAX_MESSAGE_CHARS: longest accepted message; empty: 16000.')
param maxMessageChars string = ''

@description('MAX_SESSION_BYTES: budget of one stored item; empty: 1000000.')
param maxSessionBytes string = ''

@description('MAX_HISTORY_MESSAGES: most messages kept in the session document; empty: 200.')
param maxHistoryMessages string = ''

@description('HISTORY_COMPACTION: summarize, window or none; empty: summarize.')
@allowed([
  ''
  'summarize'
  'window'
  'none'
])
param historyCompaction string = ''

@description('MAX_INPUT_TOKENS: history the model reads per turn, in tokens; empty: 8000.')
param maxInputTokens string = ''

@description('TURN_TIMEOUT_SECONDS: longest a model call may take; empty: 120.')
param turnTimeoutSeconds string = ''

@description('TURN_LEASE_SECONDS: length of a turn\'s session lease; empty: 10.')
param turnLeaseSeconds string = ''

@description('SESSION_CACHE_KB: memory an instance may keep the history of the sessions it just saved in, kB; empty: 2048; 0: none.')
param sessionCacheKb string = ''

@description('IDEMPOTENCY_TTL_SECONDS: how long Idempotency-Key results are kept; empty: 86400.')
param idempotencyTtlSeconds string = ''

@description('EVENTS_FLUSH_MS: how often a streamed turn stores its buffered events; empty: 1000.')
param eventsFlushMs string = ''

@description('EVENTS_POLL_MS: how often a resumed stream looks for a running turn\'s next events; empty: 500.')
param eventsPollMs string = ''

@description('EVENTS_TTL_SECONDS: how long a streamed turn\'s stored events are kept; empty: 86400.')
param eventsTtlSeconds string = ''

@description('BACKGROUND_QUEUE: the storage queue of background turns (created with <name>-poison).')
@minLength(3)
@maxLength(56)
param backgroundQueue string = 'background-turns'

@description('MULTITASK: what a message sent while a turn runs does unless it says; empty: reject.')
@allowed([
  ''
  'reject'
  'enqueue'
  'interrupt'
])
param multitask string = ''

@description('ENABLE_SENSITIVE_DATA: true records message text in model spans (development deployments only).')
param enableSensitiveData bool = false

@description('LOG_LEVEL of the app\'s loggers, and the Functions host\'s level for function logs.')
@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
param logLevel string = 'INFO'

@description('MCP_SERVER_URL: a remote MCP server whose tools the assistant agent uses; empty: none.')
param mcpServerUrl string = ''

@description('Key Vault secret URI (https://<vault>.vault.azure.net/secrets/<name>) holding MCP_SERVER_HEADERS; empty: none.')
param mcpServerHeadersSecretUri string = ''

@description('MCP_TOOLS_REQUIRING_APPROVAL: all, none or a comma-separated list of tool names; empty: all.')
param mcpToolsRequiringApproval string = ''

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var modelDeploymentName = empty(openAiDeploymentName) ? openAiModelName : openAiDeploymentName
var modelLocation = empty(openAiLocation) ? location : openAiLocation

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: 'app-package-${resourceToken}'
    backgroundQueueName: backgroundQueue
  }
}

module cosmos 'app/cosmos.bicep' = {
  name: 'cosmos'
  scope: rg
  params: {
    accountName: '${abbrs.documentDBDatabaseAccounts}${resourceToken}'
    location: location
    tags: tags
    databaseName: cosmosDatabaseName
    containerName: cosmosContainerName
    serverless: cosmosServerless
    autoscaleMaxThroughput: cosmosAutoscaleMaxThroughput
  }
}

module openAi 'app/openai.bicep' = {
  name: 'openai'
  scope: rg
  params: {
    name: '${abbrs.cognitiveServicesAccounts}${resourceToken}'
    location: modelLocation
    tags: tags
    deploymentName: modelDeploymentName
    modelName: openAiModelName
    modelVersion: openAiModelVersion
    skuName: openAiDeploymentSku
    capacity: openAiDeploymentCapacity
  }
}

module roles 'app/role-assignments.bicep' = {
  name: 'role-assignments'
  scope: rg
  params: {
    identityPrincipalId: identity.outputs.principalId
    developerPrincipalId: principalId
    developerPrincipalType: principalType
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    openAiAccountName: openAi.outputs.name
    cosmosAccountName: cosmos.outputs.accountName
    cosmosDatabaseName: cosmos.outputs.databaseName
  }
}

// Waits for the role assignments so the host's first start can already reach its storage.
module functionApp 'app/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  dependsOn: [
    roles
  ]
  params: {
    planName: '${abbrs.webServerFarms}${resourceToken}'
    name: '${abbrs.webSitesFunctions}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    cosmosEndpoint: cosmos.outputs.endpoint
    cosmosDatabaseName: cosmosDatabaseName
    cosmosContainerName: cosmosContainerName
    openAiEndpoint: openAi.outputs.endpoint
    openAiDeploymentName: openAi.outputs.deploymentName
    historyMode: historyMode
    sessionTtlSeconds: sessionTtlSeconds
    defaultAgent: defaultAgent
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    enableEasyAuth: enableEasyAuth
    easyAuthClientId: easyAuthClientId
    easyAuthTenantId: tenant().tenantId
    modelApi: modelApi
    agentsPackage: agentsPackage
    workflowsPackage: workflowsPackage
    maxToolRounds: maxToolRounds
    maxRequestBytes: maxRequestBytes
    maxMessageChars: maxMessageChars
    maxSessionBytes: maxSessionBytes
    maxHistoryMessages: maxHistoryMessages
    historyCompaction: historyCompaction
    maxInputTokens: maxInputTokens
    turnTimeoutSeconds: turnTimeoutSeconds
    turnLeaseSeconds: turnLeaseSeconds
    sessionCacheKb: sessionCacheKb
    idempotencyTtlSeconds: idempotencyTtlSeconds
    eventsFlushMs: eventsFlushMs
    eventsPollMs: eventsPollMs
    eventsTtlSeconds: eventsTtlSeconds
    backgroundQueue: backgroundQueue
    multitask: multitask
    enableSensitiveData: enableSensitiveData
    logLevel: logLevel
    mcpServerUrl: mcpServerUrl
    mcpServerHeadersSecretUri: mcpServerHeadersSecretUri
    mcpToolsRequiringApproval: mcpToolsRequiringApproval
  }
}

// azd writes every output into the environment (.azure/<env>/.env); none of them is a secret.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output COSMOS_ACCOUNT_NAME string = cosmos.outputs.accountName
output COSMOS_ENDPOINT string = cosmos.outputs.endpoint
output COSMOS_DATABASE string = cosmos.outputs.databaseName
output COSMOS_CONTAINER string = cosmos.outputs.containerName
output AZURE_OPENAI_ACCOUNT_NAME string = openAi.outputs.name
output AZURE_OPENAI_ENDPOINT string = openAi.outputs.endpoint
output AZURE_OPENAI_DEPLOYMENT string = openAi.outputs.deploymentName
output HISTORY_MODE string = historyMode
output SESSION_TTL_SECONDS int = sessionTtlSeconds
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_URL string = functionApp.outputs.url
output EASY_AUTH_ENABLED bool = enableEasyAuth
output EASY_AUTH_REDIRECT_URI string = 'https://${functionApp.outputs.defaultHostName}/.auth/login/aad/callback'
