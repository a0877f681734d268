"""Temporal: the enrollment workflow and the inactivity scan, their activities (the only
workflow-side I/O), the worker factory, the typed client facade, and the follow-up relay that
delivers what tenants/followups owes. Imports tenants/, never server/ or bots/."""
