"""What the carrier tells us: inbound texts (replies, STOP/HELP/START, routing to the running
enrollment), delivery status callbacks (including 21610), link clicks, and the review queue for
texts that need a person."""
