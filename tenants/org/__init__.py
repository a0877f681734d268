"""The tenant tree and who may do what in it: franchisors, locations (send windows, sender
numbers), staff, API keys, the one access module (`access.authorize`/`can`), list scoping and
the audit log."""
