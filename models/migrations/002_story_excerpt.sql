-- A plain-text excerpt made when a story is saved, so the index reads 300 characters a story
-- instead of whole bodies. Safe to run twice (IF NOT EXISTS; the backfill only fills blanks).

ALTER TABLE stories ADD COLUMN IF NOT EXISTS excerpt VARCHAR(300) NOT NULL DEFAULT '' AFTER body_html;

UPDATE stories SET excerpt = IF(CHAR_LENGTH(body) > 280, CONCAT(LEFT(body, 280), '…'), body)
WHERE excerpt = '';
