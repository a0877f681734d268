"""The gRPC API: one servicer per service (thin: parse, call tenants/ or the workflow client,
convert), the auth interceptor with the request checks, domain errors → rich status."""
