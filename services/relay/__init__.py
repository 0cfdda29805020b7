"""The Kafka relay: publishes the ledger's events to downstream subscribers (see relay.py)."""
