"""Numbers about the other contexts, read-only: a location's stats (`/reengage stats`) and a
contact's evidence export. The reporting issue fills this with measures and rollups."""
