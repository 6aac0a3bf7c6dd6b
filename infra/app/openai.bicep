// Azure OpenAI account with one chat model deployment. Key authentication is off: callers use an
// Entra ID token and need the "Cognitive Services OpenAI User" role (role-assignments.bicep).

@description('Name of the account; also its custom subdomain, which token authentication requires.')
@minLength(2)
@maxLength(64)
param name string

@description('Azure region of the account (the model must be offered there).')
param location string

@description('Tags applied to the account.')
param tags object

@description('Name of the model deployment (what AZURE_OPENAI_DEPLOYMENT holds).')
param deploymentName string

@description('Model name, e.g. gpt-4o-mini.')
param modelName string

@description('Model version, e.g. 2024-07-18.')
param modelVersion string

@description('Deployment SKU, e.g. GlobalStandard or Standard.')
param skuName string

@description('Deployment capacity in thousands of tokens per minute.')
@minValue(1)
param capacity int

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  properties: {
    customSubDomainName: name
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
    }
  }
}

resource deployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: deploymentName
  sku: {
    name: skuName
    capacity: capacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: modelName
      version: modelVersion
    }
  }
}

output name string = account.name
output endpoint string = account.properties.endpoint
output deploymentName string = deployment.name
