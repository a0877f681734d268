"""Integrations: the platform among the business's other tools. Outbound webhooks (Standard
Webhooks 1.0: endpoints, the event outbox the database's triggers fill, deliveries on the retry
schedule) and the inbound event intake (Segment Track-shaped events mapped to activities).
docs/integrations.md is the guide."""
