"""Contacts and what is known about them: the contact record, CSV import, consent (and
brand-wide suppression), activity (purchases, visits…), and whether a number can take texts
(undeliverable numbers, may-we-text)."""
