"""Adapters: the ledger's connections to PostgreSQL, Stripe, object storage and identity."""
