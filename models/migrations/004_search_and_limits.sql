-- Search through a FULLTEXT index on terms made in Python (models/search.py), instead of
-- LIKE '%...%' over every body; rows saved before this migration are filled in by
-- migrate.backfill_search (NULL = not indexed yet). Plus the index the stories-per-hour limit reads.
-- Safe to run twice (MariaDB's IF NOT EXISTS forms).

ALTER TABLE stories ADD COLUMN IF NOT EXISTS search_text MEDIUMTEXT NULL DEFAULT NULL AFTER excerpt;

ALTER TABLE stories ADD FULLTEXT INDEX IF NOT EXISTS ft_stories_search (search_text);

ALTER TABLE stories ADD INDEX IF NOT EXISTS ix_stories_user_created (user_id, created_at);

-- One row per address that registers: the registration transaction locks it (INSERT ... ON
-- DUPLICATE KEY UPDATE) so "count this hour, then insert" cannot interleave for one address.
CREATE TABLE IF NOT EXISTS registration_ips (
    ip VARCHAR(45) NOT NULL PRIMARY KEY,
    last_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
