"""The message ledger: every text in or out, reserved before the carrier is called so nothing
is sent twice; the one outbound path (hand-off and applying the carrier's result); a contact's
conversation; the development carrier's outbox."""
