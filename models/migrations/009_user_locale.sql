-- The member's chosen language for the pages (issue 9): a tornado.locale code such as 'zh_CN',
-- or NULL while they have not chosen (then the lang cookie / Accept-Language decide).
-- Safe to run twice.

ALTER TABLE users ADD COLUMN IF NOT EXISTS locale VARCHAR(10) CHARACTER SET ascii NULL DEFAULT NULL;
