-- Where each account was registered from, so registrations can be limited per IP (each one
-- costs an argon2 hash). Safe to run twice (MariaDB's IF NOT EXISTS forms).

ALTER TABLE users ADD COLUMN IF NOT EXISTS created_ip VARCHAR(45) NOT NULL DEFAULT '' AFTER password_hash;

ALTER TABLE users ADD INDEX IF NOT EXISTS ix_users_created_ip (created_ip, created_at);
