-- Running enrollments with no run id (issue 18, no orphans): the row is committed before its
-- workflow starts, so a process killed between the two leaves one. The reconciler
-- (workflows.orphans, every 15 s) reads them oldest first; only rows in flight or orphaned are
-- in this index, so its query reads a handful of entries, not the enrollments table.
CREATE INDEX enrollments_unstarted ON enrollments (enrolled_at, id)
    WHERE run_id = '' AND status IN ('active', 'paused', 'awaiting_approval');
