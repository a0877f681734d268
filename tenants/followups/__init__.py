"""Work owed after a transaction commits, written in that transaction (an outbox): signals to
running workflows, service texts, staff notices; plus the Slack thread and approval-post
memory. The relay in `workflows.relay` delivers what is owed. Below contacts because every
state change (an opt-out, a click, an activity) owes one."""
