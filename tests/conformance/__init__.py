"""Issue 11 §2: every pipeline invariant over the four call modes and every primitive."""
