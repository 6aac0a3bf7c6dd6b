// Cosmos DB for NoSQL: the account, the database and the container the app stores sessions in.
// Keys are disabled (data-plane RBAC only, see role-assignments.bicep). The container's partition
// key and indexing policy must stay equal to PARTITION_KEY_PATHS and INDEXING_POLICY in
// cosmos_history/adapters/cosmos/client.py (tests/test_infra.py checks it).

@description('Name of the Cosmos DB account (3-44 lowercase letters, digits and hyphens).')
@minLength(3)
@maxLength(44)
param accountName string

@description('Azure region.')
param location string

@description('Tags applied to the account.')
param tags object

@description('Name of the SQL database.')
param databaseName string

@description('Name of the container that holds the sessions.')
param containerName string

@description('true: serverless account (pay per request unit). false: provisioned autoscale throughput on the container.')
param serverless bool = true

@description('Maximum autoscale throughput (RU/s) of the container when serverless is false.')
@minValue(1000)
param autoscaleMaxThroughput int = 1000

var capabilities = serverless ? [{ name: 'EnableServerless' }] : []
var throughputOptions = serverless ? {} : { autoscaleSettings: { maxThroughput: autoscaleMaxThroughput } }

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: accountName
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    capabilities: capabilities
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: 'Enabled'
    enableAutomaticFailover: false
    enableFreeTier: false
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
  }
}

resource container 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: containerName
  properties: {
    resource: {
      id: containerName
      // Hierarchical key: a user's sessions are one key prefix (listing them is a single-partition
      // query), a session's items one logical partition (docs/adr-partitioning.md). A container's
      // partition key cannot change: an older container is migrated (python -m cosmos_history.migrate).
      partitionKey: {
        paths: [
          '/userId'
          '/sessionId'
        ]
        kind: 'MultiHash'
        version: 2
      }
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: [
          {
            path: '/userId/?'
          }
          {
            path: '/type/?'
          }
          {
            path: '/updatedAt/?'
          }
        ]
        excludedPaths: [
          {
            path: '/*'
          }
          {
            path: '/"_etag"/?'
          }
        ]
      }
      // -1: time to live is on but items never expire unless they carry their own `ttl`, which the
      // app writes on every item when SESSION_TTL_SECONDS is set (sliding retention).
      defaultTtl: -1
    }
    options: throughputOptions
  }
}

output accountName string = account.name
output endpoint string = account.properties.documentEndpoint
output databaseName string = database.name
output containerName string = container.name
