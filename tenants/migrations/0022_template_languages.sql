-- Template languages (docs/languages.md; tenants/content/templates.py,
-- tenants/content/language_variants.py). A template's existing columns stay its default
-- language's text, so nothing written before moves: `default_language` says which language that
-- is. Every other language is a variant with its own latest and live revision; revisions keep one
-- numbering per template across languages, so a revision's name stays unique, and say their
-- language ('' for the template's default language).

ALTER TABLE templates ADD COLUMN default_language text NOT NULL DEFAULT 'en'
    CHECK (default_language ~ '^[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|[0-9]{3}))?$');

-- a constant default: no row is rewritten (and the immutability trigger, BEFORE UPDATE, never
-- fires on it)
ALTER TABLE template_revisions ADD COLUMN language text NOT NULL DEFAULT '';

CREATE TABLE template_variants (
    franchisor_id    text NOT NULL,
    location_id      text,                 -- NULL: a brand template's variant
    template_id      text NOT NULL,
    -- a normalized BCP-47 tag (the form tenants.core.languages accepts, as contacts' CHECK)
    language         text NOT NULL
                     CHECK (language ~ '^[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|[0-9]{3}))?$'),
    latest_revision  integer NOT NULL,
    latest_state     text NOT NULL CHECK (latest_state IN ('draft', 'pending_approval',
                                                           'approved', 'rejected')),
    latest_body      text NOT NULL,
    live_revision    integer,              -- the variant's latest approved revision, NULL while none
    create_time      timestamptz NOT NULL DEFAULT now(),
    update_time      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX template_variants_key
    ON template_variants (franchisor_id, coalesce(location_id, ''), template_id, language);
