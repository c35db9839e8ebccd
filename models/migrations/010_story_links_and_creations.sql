-- Issue 14. (1) A story's link list (JSON array of its first http/https links, made at save time
-- with the Markdown), so reads never parse body_html; NULL = not made yet, filled by
-- migrate.backfill_links. (2) One row per story created, kept when the story is deleted, so the
-- stories-per-hour limit counts creations, not survivors; housekeeping drops rows past the hour.
-- Safe to run twice (IF NOT EXISTS forms; INSERT IGNORE on the story's id).

ALTER TABLE stories ADD COLUMN IF NOT EXISTS links TEXT NULL DEFAULT NULL AFTER search_text;

CREATE TABLE IF NOT EXISTS story_creations (
    story_id INT UNSIGNED NOT NULL PRIMARY KEY,  -- no foreign key: the row outlives its story
    user_id INT UNSIGNED NOT NULL,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    KEY ix_story_creations_user (user_id, created_at),
    KEY ix_story_creations_created (created_at),
    CONSTRAINT fk_story_creations_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT IGNORE INTO story_creations (story_id, user_id, created_at)
SELECT id, user_id, created_at FROM stories WHERE created_at > NOW() - INTERVAL 1 HOUR;
