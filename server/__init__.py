"""The edges and the process wiring: `grpc/` (the API: auth and request checks, servicers,
status mapping), `http/` (the HTTP edge: carrier webhooks, tracked links, Slack), `cli/` (the
`reengage` command), `carriers/` (Twilio and the development outbox). At the root: settings
(`config`), the composition root (`platform`), the roles a process runs (`app`), the embedded
dev stack (`embedded`, `supervisor`) and proto generation."""
