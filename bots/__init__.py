"""The Slack bolt app (chat-ops): notices posted into each location's channel, one thread per
contact; approval, review and override buttons; `/reengage` commands; Slack user → staff
identity. Decisions go through tenants/ access rules and the workflow client."""
