"""The business rules of the PeerPush ledger: pure, deterministic, no I/O."""
