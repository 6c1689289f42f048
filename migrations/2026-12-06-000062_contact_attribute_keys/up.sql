-- The attribute names any contact of a workspace has had, so saving a template can warn
-- about a variable no contact can fill without scanning the contacts. Names are recorded
-- as contacts are written (once per statement, from its transition table) and never
-- removed: a warning is advice, and a stale name only silences one.
CREATE TABLE contact_attribute_keys (
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    key           text NOT NULL,
    PRIMARY KEY (workspace_id, key)
);

CREATE FUNCTION record_contact_attribute_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contact_attribute_keys (workspace_id, key)
    SELECT DISTINCT c.workspace_id, k.key
      FROM written_contacts c, jsonb_object_keys(c.attributes) AS k(key)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER contacts_attribute_keys_insert AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS written_contacts
    FOR EACH STATEMENT EXECUTE FUNCTION record_contact_attribute_keys();
CREATE TRIGGER contacts_attribute_keys_update AFTER UPDATE ON contacts
    REFERENCING NEW TABLE AS written_contacts
    FOR EACH STATEMENT EXECUTE FUNCTION record_contact_attribute_keys();

INSERT INTO contact_attribute_keys (workspace_id, key)
SELECT DISTINCT c.workspace_id, k.key FROM contacts c, jsonb_object_keys(c.attributes) AS k(key)
ON CONFLICT DO NOTHING;
