-- The dashboard's sign-in links and sessions (docs/dashboard.md "Signing in";
-- tenants/org/dashboard_sessions.py). Nobody has a password: a staff member gets a link that
-- works once within 10 minutes, and redeeming it starts a 12-hour session. Only SHA-256 hashes
-- of the tokens are stored, so a copy of the database signs nobody in.
--
-- staff_members has no primary key to refer to (its unique index is on an expression), so the
-- rows name their staff member by (franchisor_id, location_id, staff_id) and its create_time:
-- every read joins staff_members on all four, so a deleted staff member's rows are dead at once,
-- and a staff member deleted and created again under the same id is someone else.
-- delete_staff_member also deletes the rows, in its transaction.

CREATE TABLE dashboard_sign_in_links (
    token_sha256      text PRIMARY KEY,              -- hex SHA-256 of the link's token
    franchisor_id     text NOT NULL REFERENCES franchisors (id),
    location_id       text,                          -- NULL: a franchisor staff member
    staff_id          text NOT NULL,
    staff_create_time timestamptz NOT NULL,          -- the staff member's create_time
    issued_by         text NOT NULL,                 -- the principal's audit label
    create_time       timestamptz NOT NULL,
    expire_time       timestamptz NOT NULL,
    used_time         timestamptz,                   -- set once, by the redeem that wins
    FOREIGN KEY (franchisor_id, location_id) REFERENCES locations (franchisor_id, id)
);
CREATE INDEX dashboard_sign_in_links_staff
    ON dashboard_sign_in_links (franchisor_id, coalesce(location_id, ''), staff_id);

CREATE TABLE dashboard_sessions (
    id_sha256         text PRIMARY KEY,              -- hex SHA-256 of the session cookie's token
    franchisor_id     text NOT NULL REFERENCES franchisors (id),
    location_id       text,
    staff_id          text NOT NULL,
    staff_create_time timestamptz NOT NULL,
    csrf_token        text NOT NULL,                 -- the forms' token (useless without the cookie)
    create_time       timestamptz NOT NULL,
    expire_time       timestamptz NOT NULL,          -- 12 h after sign-in, never extended
    FOREIGN KEY (franchisor_id, location_id) REFERENCES locations (franchisor_id, id)
);
CREATE INDEX dashboard_sessions_staff
    ON dashboard_sessions (franchisor_id, coalesce(location_id, ''), staff_id);
