"""The vocabulary every other context speaks: domain errors (mapped to gRPC status by the
edge), resource names and ids, paging tokens, phone numbers, input checks on untrusted strings,
partial updates (update masks and etags), enrollment statuses shared across contexts, and the
transaction retry for deadlocks. Imports nothing else of ours."""
