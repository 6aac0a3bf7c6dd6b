"""Benchmark of the conversation backend against the framework's CosmosHistoryProvider (`make bench`)."""
