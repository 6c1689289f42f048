-- Click tracking leaves a link whose visible text is a URL (or a domain) untracked, since
-- filters score a tracker URL behind such a text as a spoofed link; a sequence may force it.
ALTER TABLE sequences ADD COLUMN track_url_text_links boolean NOT NULL DEFAULT false;
