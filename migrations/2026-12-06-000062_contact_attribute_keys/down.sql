DROP TRIGGER contacts_attribute_keys_update ON contacts;
DROP TRIGGER contacts_attribute_keys_insert ON contacts;
DROP FUNCTION record_contact_attribute_keys();
DROP TABLE contact_attribute_keys;
