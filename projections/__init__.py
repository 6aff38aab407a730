"""Read models built from the event stream, exactly once, and rebuildable from it."""
