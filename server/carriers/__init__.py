"""SMS carrier adapters (the `workflows.carrier.Carrier` protocol) for real providers."""
