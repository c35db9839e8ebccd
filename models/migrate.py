"""Creates the database (utf8mb4) if missing and applies the numbered migrations/*.sql in order.

Runs at start, before any fork, on one plain pymysql connection. GET_LOCK keeps two starters from
racing; DDL commits by itself, so every statement in a migration must be safe to run twice.
"""

import logging
import os
import re

from models import markdown, reading, search, stories
from models.db import open_connection

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
log = logging.getLogger("storyhouse.migrate")


class MigrationLocked(Exception):
    """Another process has held the migration lock for a minute."""


def migration_files():
    """[(version, name, path)] sorted by version, from files named like 001_init.sql."""
    found = []
    for name in os.listdir(MIGRATIONS_DIR):
        m = re.fullmatch(r"(\d+)_[\w-]+\.sql", name)
        if m:
            found.append((int(m.group(1)), name, os.path.join(MIGRATIONS_DIR, name)))
    return sorted(found)


def statements(sql):
    """Split a migration on semicolons that end a line (our .sql files keep to that)."""
    parts = re.split(r";\s*$", sql, flags=re.MULTILINE)
    return [
        p.strip()
        for p in parts
        if p.strip() and not all(line.strip().startswith("--") or not line.strip() for line in p.splitlines())
    ]


def create_database(cur, database):
    # A database name cannot be a placeholder; it is checked against a strict pattern instead.
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", database):
        raise ValueError("mysql_database must be letters, digits and underscores: %r" % database)
    sql = "CREATE DATABASE IF NOT EXISTS `" + database + "` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    cur.execute(sql)
    cur.execute("USE `" + database + "`")


def migrate(host, port, user, password, database):
    """Create the database if missing and apply pending migrations; returns the versions applied."""
    con = open_connection(host, port, user, password, None, read_timeout=120)
    applied = []
    try:
        with con.cursor() as cur:
            create_database(cur, database)
            cur.execute("SELECT GET_LOCK(%s, 60) AS got", ("storyhouse_migrate_" + database,))
            if not cur.fetchone()["got"]:
                raise MigrationLocked(
                    "another process has been migrating database %s for 60 s: wait for it, then start again."
                    % database
                )
            try:
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version INT UNSIGNED PRIMARY KEY,"
                    " name VARCHAR(255) NOT NULL,"
                    " applied_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP"
                    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
                )
                cur.execute("SELECT version FROM schema_migrations")
                done = {row["version"] for row in cur.fetchall()}
                for version, name, path in migration_files():
                    if version in done:
                        continue
                    with open(path, encoding="utf-8") as f:
                        for statement in statements(f.read()):
                            cur.execute(statement)
                    cur.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name)
                    )
                    log.info("applied migration %s", name)
                    applied.append(version)
                backfill_search(cur)
                backfill_reading(cur)
                backfill_links(cur)
            finally:
                cur.execute("SELECT RELEASE_LOCK(%s)", ("storyhouse_migrate_" + database,))
    finally:
        con.close()
    return applied


def backfill_search(cur, batch=200):
    """Fill search_text for stories saved before the search index existed (migration 004)."""
    while True:
        cur.execute("SELECT id, title, body FROM stories WHERE search_text IS NULL LIMIT %s", (batch,))
        rows = cur.fetchall()
        for row in rows:
            cur.execute(
                "UPDATE stories SET search_text = %s WHERE id = %s",
                (search.document(row["title"], row["body"]), row["id"]),
            )
        if len(rows) < batch:
            return


def backfill_reading(cur, batch=200):
    """Reading time, and the excerpt from the first paragraph, for stories saved before migration
    011 (reading_minutes NULL); made from the stored HTML, so nothing is rendered again."""
    while True:
        cur.execute("SELECT id, body_html FROM stories WHERE reading_minutes IS NULL LIMIT %s", (batch,))
        rows = cur.fetchall()
        for row in rows:
            cur.execute(
                "UPDATE stories SET excerpt = %s, reading_minutes = %s WHERE id = %s",
                (
                    markdown.excerpt(row["body_html"]),
                    reading.minutes(markdown.plain_text(row["body_html"])),
                    row["id"],
                ),
            )
        if len(rows) < batch:
            return


def backfill_links(cur, batch=200):
    """Fill links for stories saved before reads stopped parsing body_html (migration 010)."""
    while True:
        cur.execute("SELECT id, body_html FROM stories WHERE links IS NULL LIMIT %s", (batch,))
        rows = cur.fetchall()
        for row in rows:
            links = stories.links_json(row["body_html"])
            cur.execute("UPDATE stories SET links = %s WHERE id = %s", (links, row["id"]))
        if len(rows) < batch:
            return
