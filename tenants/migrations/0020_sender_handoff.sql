-- When each sender number last handed a text to the carrier (issue 19, the replicas drill).
-- next_slot spreads a burst ahead of time, but a send woken late for its slot (a workflow timer
-- fires when its worker gets to it) went out just before the next slot's on-time send: two texts
-- from one number 0.1 s apart at 5 a second. A send now also takes its turn here right before
-- the hand-off: at least 1/rate after the previous one, whichever worker made it.
ALTER TABLE sender_pacing ADD COLUMN last_handoff timestamptz;
