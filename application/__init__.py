"""The command side: load aggregates, decide, save once."""
