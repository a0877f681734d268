-- TRUNCATE bypasses row triggers: refuse it on the append-only tables too.
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER template_revisions_no_truncate BEFORE TRUNCATE ON template_revisions
    FOR EACH STATEMENT EXECUTE FUNCTION template_revisions_are_immutable();
