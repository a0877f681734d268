"""One contact in one sequence: the read model of the enrollment workflows (`records`), the
entry rules (`entry`: consent, one running enrollment, priority, daily cap) and the activity
triggers that enroll contacts (`triggers`)."""
