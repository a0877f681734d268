"""What a text says: templates and their revisions and approvals, template bodies and their
placeholders, segment math (GSM-7/UCS-2), previews, rendering for a contact, tracked links, the
first-message rule (brand + opt-out) and the service texts (STOP/HELP answers)."""
