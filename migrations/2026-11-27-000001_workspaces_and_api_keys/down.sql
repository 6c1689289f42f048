DROP TABLE api_keys;
DROP TABLE workspaces;
DROP FUNCTION set_updated_at();
