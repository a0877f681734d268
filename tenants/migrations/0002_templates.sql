-- Templates: brand templates (location_id NULL) and location templates (own or overrides of an
-- editable brand template), each with an append-only list of revisions.

CREATE TABLE templates (
    franchisor_id    text NOT NULL REFERENCES franchisors (id),
    location_id      text,                 -- NULL: a brand template
    id               text NOT NULL,
    display_name     text NOT NULL,
    lock_mode        text NOT NULL DEFAULT 'locked' CHECK (lock_mode IN ('locked', 'editable')),
    override_of      text,                 -- brand template id this location template overrides
    archived         boolean NOT NULL DEFAULT false,
    latest_revision  integer NOT NULL,
    latest_state     text NOT NULL,
    latest_body      text NOT NULL,
    live_revision    integer,              -- the latest approved revision, NULL while none
    create_time      timestamptz NOT NULL DEFAULT now(),
    update_time      timestamptz NOT NULL DEFAULT now(),
    version          bigint NOT NULL DEFAULT 1,
    sort_key         text COLLATE "C" GENERATED ALWAYS AS
                         (coalesce(location_id, '') || '/' || id) STORED,
    FOREIGN KEY (franchisor_id, location_id) REFERENCES locations (franchisor_id, id),
    CHECK (location_id IS NOT NULL OR override_of IS NULL),
    CHECK (latest_state IN ('draft', 'pending_approval', 'approved', 'rejected'))
);
CREATE UNIQUE INDEX templates_name ON templates (franchisor_id, coalesce(location_id, ''), id);
CREATE UNIQUE INDEX templates_list ON templates (franchisor_id, sort_key);
-- at most one live (not archived) override of a brand template per location
CREATE UNIQUE INDEX templates_one_override ON templates (franchisor_id, location_id, override_of)
    WHERE override_of IS NOT NULL AND NOT archived;

CREATE TABLE template_revisions (
    franchisor_id  text NOT NULL,
    location_id    text,
    template_id    text NOT NULL,
    number         integer NOT NULL,
    body           text NOT NULL,
    state          text NOT NULL CHECK (state IN ('draft', 'pending_approval', 'approved',
                                                  'rejected')),
    author         text NOT NULL,
    reason         text NOT NULL DEFAULT '',
    create_time    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX template_revisions_key
    ON template_revisions (franchisor_id, coalesce(location_id, ''), template_id, number);

CREATE FUNCTION template_revisions_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'template revisions are immutable';
END $$;
CREATE TRIGGER template_revisions_immutable BEFORE UPDATE OR DELETE ON template_revisions
    FOR EACH ROW EXECUTE FUNCTION template_revisions_are_immutable();
