"""The `reengage` command (`main`) and its subcommands, each a thin client of the gRPC API or,
for bootstrap tasks (keys, migrations, the outbox), of the database."""
