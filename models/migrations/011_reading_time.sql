-- A story's reading time in minutes, made when it is saved (models/reading.py). NULL marks a story
-- saved before this migration: migrate.backfill_reading fills it in and remakes its excerpt from
-- the first paragraph (models/markdown.excerpt). Safe to run twice (IF NOT EXISTS).

ALTER TABLE stories ADD COLUMN IF NOT EXISTS reading_minutes SMALLINT UNSIGNED NULL DEFAULT NULL AFTER excerpt;
