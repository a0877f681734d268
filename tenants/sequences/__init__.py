"""Sequence definitions (steps, waits, exit events, entry settings), the planning of a step
(`decide`: send, defer, skip or block, and when) and the simulation that shows a definition
against a sample contact with the same decision function."""
