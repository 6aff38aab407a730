"""The auditor's toolkit (``peerpush audit verify|export|balance``, issue 5).

Read-only, against any database: it trusts only the stored event stream. ``verify`` replays
the stream into aggregates, checks rules §8's invariants, compares the result with the stored
read models and recomputes the hash chain; ``export`` streams the decoded events or the
journal; ``balance`` shows a wallet as it was at a position or a time.
"""
