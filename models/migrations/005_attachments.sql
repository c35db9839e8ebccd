-- Files attached to stories. The file lives under upload_dir at <aa>/<bb>/<storage_name> (a random
-- name); the client's filename is metadata only. Deleting a story deletes its rows (the files go
-- after the commit, in models/stories.py). Safe to run twice (IF NOT EXISTS).

CREATE TABLE IF NOT EXISTS attachments (
    id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
    story_id INT UNSIGNED NOT NULL,
    storage_name CHAR(32) CHARACTER SET ascii NOT NULL,
    filename VARCHAR(255) NOT NULL,
    content_type VARCHAR(127) CHARACTER SET ascii NOT NULL,
    size BIGINT UNSIGNED NOT NULL,
    sha256 CHAR(64) CHARACTER SET ascii NOT NULL,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE KEY uq_attachments_storage (storage_name),
    KEY ix_attachments_story (story_id),
    CONSTRAINT fk_attachments_story FOREIGN KEY (story_id) REFERENCES stories (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
