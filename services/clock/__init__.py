"""The clock: records the events that time causes (overdue, aging buckets, dunning
steps, promises kept or broken) for a business date, idempotently."""
