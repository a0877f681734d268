-- An enrollment's story kept after it ends: the workflow's history lines (`<ISO UTC time>
-- <what happened>`: deferrals, skips, sends, decisions, the exit), sent with its final
-- transition (completed or exited). NULL while it runs (GetEnrollment reads the running
-- workflow's own history then) and for enrollments that ended before this column existed.
ALTER TABLE enrollments ADD COLUMN history text[];
