-- Contact languages (issue 21; docs/languages.md). A contact's preferred language is a BCP-47
-- tag in its conventional case (tenants/core/languages.py: `es`, `es-MX`, `zh-Hant`), '' for no
-- preference: the template's default language and English platform texts. The CHECK repeats
-- the form the code writes, so that no other writer stores a tag the code would not read.
ALTER TABLE contacts ADD COLUMN preferred_language text NOT NULL DEFAULT ''
    CHECK (preferred_language ~ '^([a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|[0-9]{3}))?)?$');

-- Whether a reply in Spanish sets `es` on a contact of the brand without a preference
-- (tenants/inbound/texts.py). Off by default: the brand decides that a guess may choose the
-- language its customers are texted in.
ALTER TABLE franchisors ADD COLUMN infer_contact_language boolean NOT NULL DEFAULT false;
