-- Expired dashboard sign-in links and sessions are swept a page at a time whenever anyone gets
-- a link or signs in (tenants/org/dashboard_sessions.py), not only those of the person doing
-- so: the rows of people who never come back do not stay for ever.
CREATE INDEX dashboard_sign_in_links_expiry ON dashboard_sign_in_links (expire_time);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expire_time);
