-- Indexes for the dashboard (docs/dashboard.md).
--
-- Expired sign-in links and sessions are swept a page at a time whenever anyone gets a link or
-- signs in (tenants/org/dashboard_sessions.py), not only those of the person doing so: the rows
-- of people who never come back do not stay for ever.
CREATE INDEX dashboard_sign_in_links_expiry ON dashboard_sign_in_links (expire_time);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expire_time);

-- The approvals work queue (tenants/enrollment/approvals_queue.py) lists and counts the
-- enrollments awaiting approval of a location or a brand, soonest deadline first: a few rows of
-- many, found without reading every enrollment of the brand.
CREATE INDEX enrollments_awaiting_approval ON enrollments (franchisor_id, location_id, next_wake_at)
    WHERE status = 'awaiting_approval';
