"""The app's workflows: found in the ``workflows`` package, run on the queue, checkpointed in Cosmos DB."""
