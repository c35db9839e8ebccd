-- Link preview cards, one row per URL (successes and failures alike, so a dead link is not
-- fetched again at every save), with the time of the fetch for refreshing stale rows.
-- Safe to run twice.

CREATE TABLE IF NOT EXISTS link_previews (
    url_hash CHAR(64) CHARACTER SET ascii NOT NULL PRIMARY KEY,
    url VARCHAR(2048) NOT NULL,
    ok TINYINT(1) NOT NULL,
    title VARCHAR(300) NOT NULL DEFAULT '',
    description VARCHAR(1000) NOT NULL DEFAULT '',
    error VARCHAR(200) NOT NULL DEFAULT '',
    fetched_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    KEY ix_link_previews_fetched (fetched_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
