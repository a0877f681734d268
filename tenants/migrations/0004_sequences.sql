-- Sequences: brand sequences (location_id NULL) usable by every location, and location
-- sequences. The steps and rules are one validated JSON definition, versioned with the row.

CREATE TABLE sequences (
    franchisor_id    text NOT NULL REFERENCES franchisors (id),
    location_id      text,
    id               text NOT NULL,
    display_name     text NOT NULL,
    definition       jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused',
                                                                     'archived')),
    priority         integer NOT NULL DEFAULT 0,
    entry_kind       text NOT NULL DEFAULT 'manual' CHECK (entry_kind IN ('manual', 'inactivity',
                                                                          'activity')),
    entry_activity   text NOT NULL DEFAULT '',   -- the activity kind an event trigger listens to
    create_time      timestamptz NOT NULL DEFAULT now(),
    update_time      timestamptz NOT NULL DEFAULT now(),
    version          bigint NOT NULL DEFAULT 1,
    sort_key         text COLLATE "C" GENERATED ALWAYS AS
                         (coalesce(location_id, '') || '/' || id) STORED,
    FOREIGN KEY (franchisor_id, location_id) REFERENCES locations (franchisor_id, id)
);
CREATE UNIQUE INDEX sequences_name ON sequences (franchisor_id, coalesce(location_id, ''), id);
CREATE UNIQUE INDEX sequences_list ON sequences (franchisor_id, sort_key);
CREATE INDEX sequences_triggers ON sequences (franchisor_id, entry_kind, entry_activity)
    WHERE state = 'active';
