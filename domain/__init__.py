"""Pure domain of arledger: events, aggregates, money, dates and rules. No I/O."""
