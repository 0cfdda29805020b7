"""The edges of arledger: settings, persistence, application services, CLI, API, workers."""
