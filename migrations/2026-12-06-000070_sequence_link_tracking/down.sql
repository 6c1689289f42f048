ALTER TABLE sequences DROP COLUMN track_url_text_links;
