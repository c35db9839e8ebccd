"""Seeds a benchmark database: 1,000 members and 10,000 stories with realistic Markdown bodies.

Rows go in through plain SQL in batches, but body_html, excerpt, search_text, reading_minutes and
links are made by the app's own function (models.stories._render), exactly as Stories.create writes
them. Deterministic (fixed random seed), and skipped when the database already holds the same
seed (a `bench_seed` marker table records what was written).

    .venv/bin/python bench/seed.py --mysql_database=storyhouse_bench_pages [--users=N --stories=N]
"""

import datetime
import multiprocessing
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from argon2 import PasswordHasher  # noqa: E402

import config  # noqa: E402
from models import migrate  # noqa: E402
from models import stories as stories_model  # noqa: E402
from models.db import open_connection  # noqa: E402

SEED_VERSION = 4  # 2: links are same-site (no link-preview fetches); 3: reading_minutes; 4: links
PASSWORD = "bench-password-1"  # every seeded member's password (one argon2 hash, shared)
SEARCH_WORD = "lighthouse"  # in about 3% of stories: /?q=lighthouse has a few pages of results

WORDS = (
    "the of and to a in that it was he she they we his her their said for on with as at by from "
    "morning evening river garden window letter winter summer kitchen village station bridge "
    "mountain harbour market teacher doctor sister brother mother father neighbour stranger "
    "quietly slowly suddenly almost always never perhaps often together alone again "
    "walked waited remembered opened closed carried listened wondered whispered laughed "
    "old small bright cold warm dark green heavy empty narrow gentle distant familiar "
    "house road field forest door table chair lamp book story song dream silence voice "
    "light rain snow wind sea sky cloud stone tree bird dog cat train boat coffee bread "
    "because although while before after until since whenever"
).split()
HEADINGS = ("Part one", "Later", "The road home", "Notes", "What happened next", "Epilogue")


def sentence(rng):
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
    if rng.random() < 0.15:
        words[rng.randrange(len(words))] = "*" + rng.choice(WORDS) + "*"
    if rng.random() < 0.08:
        words[rng.randrange(len(words))] = "**" + rng.choice(WORDS) + "**"
    return " ".join(words).capitalize() + rng.choice(".....?!")


def paragraph(rng):
    return " ".join(sentence(rng) for _ in range(rng.randint(2, 7)))


def story(rng, n):
    """(title, body) for story number n: 3-12 paragraphs, now and then a heading, a list, a quote,
    a link to another story or some code, like stories people write."""
    title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))).capitalize()
    blocks = []
    for _ in range(rng.randint(3, 12)):
        r = rng.random()
        if r < 0.08:
            blocks.append("## " + rng.choice(HEADINGS))
        elif r < 0.14:
            blocks.append("\n".join("- " + sentence(rng) for _ in range(rng.randint(2, 5))))
        elif r < 0.18:
            blocks.append("> " + sentence(rng))
        elif r < 0.21:
            # Same-site links only: a link to another host would make the app fetch its preview card.
            blocks.append("See [the earlier one](/story/%d) for the way." % rng.randint(1, n))
        elif r < 0.23:
            blocks.append("```\n%s\n```" % "\n".join(rng.choice(WORDS) for _ in range(3)))
        else:
            blocks.append(paragraph(rng))
    if n % 33 == 0:  # the search benchmark's word, in about 3% of the stories
        blocks.insert(rng.randrange(len(blocks) + 1), "The old %s stood on the hill." % SEARCH_WORD)
    return title, "\n\n".join(blocks)


def rendered(args):
    """A story row's computed columns, made by the app's own functions (models/stories.py _render)."""
    title, body = args
    return stories_model._render(title, body)


def marker(cur):
    cur.execute(
        "CREATE TABLE IF NOT EXISTS bench_seed"
        " (version INT NOT NULL, users INT NOT NULL, stories INT NOT NULL)"
    )
    cur.execute("SELECT version, users, stories FROM bench_seed")
    return cur.fetchone()


def seed(db, users=1000, stories=10000, force=False, log=print):
    """Migrate `db` (mysql settings dict) and fill it; returns True when it wrote rows."""
    migrate.migrate(**db)
    con = open_connection(**db, read_timeout=600)
    try:
        with con.cursor() as cur:
            want = {"version": SEED_VERSION, "users": users, "stories": stories}
            if marker(cur) == want and not force:
                log("seed: %s already holds %d users and %d stories" % (db["database"], users, stories))
                return False
            log("seed: writing %d users and %d stories into %s" % (users, stories, db["database"]))
            cur.execute("SET FOREIGN_KEY_CHECKS = 0")
            for table in ("sessions", "login_failures", "registration_ips", "stories", "users", "bench_seed"):
                cur.execute("TRUNCATE TABLE " + table)
            cur.execute("SET FOREIGN_KEY_CHECKS = 1")

            rng = random.Random(20261203)
            start = datetime.datetime(2025, 1, 1)
            password_hash = PasswordHasher().hash(PASSWORD)
            rows = [
                ("writer%04d" % i, password_hash, start + datetime.timedelta(hours=i))
                for i in range(1, users + 1)
            ]
            cur.executemany(
                "INSERT INTO users (username, password_hash, created_at) VALUES (%s, %s, %s)", rows
            )

            texts = [story(rng, n) for n in range(1, stories + 1)]
            authors = [rng.randint(1, users) for _ in texts]
            span = (datetime.datetime(2026, 11, 30) - start).total_seconds()
            times = sorted(start + datetime.timedelta(seconds=rng.uniform(0, span)) for _ in texts)
            batch = 250
            # Closed and joined, not terminated (the `with` form): terminate() can hang on a worker
            # that is killed while it holds a lock.
            pool = multiprocessing.get_context("fork").Pool(min(2, os.cpu_count() or 1))
            try:
                for i in range(0, stories, batch):
                    chunk = texts[i : i + batch]
                    computed = pool.map(rendered, chunk, chunksize=25)
                    cur.executemany(
                        "INSERT INTO stories (user_id, title, body, body_html, excerpt, search_text,"
                        " reading_minutes, links, created_at, updated_at)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        [
                            (
                                authors[i + k],
                                title,
                                body,
                                html,
                                excerpt,
                                terms,
                                minutes,
                                links,
                                times[i + k],
                                times[i + k],
                            )
                            for k, ((title, body), (html, excerpt, terms, minutes, links)) in enumerate(
                                zip(chunk, computed, strict=True)
                            )
                        ],
                    )
                    if (i // batch) % 8 == 7:
                        log("seed: %d stories" % (i + batch))
            finally:
                pool.close()
                pool.join()
            cur.execute("ANALYZE TABLE users, stories")
            cur.fetchall()
            cur.execute(
                "INSERT INTO bench_seed (version, users, stories) VALUES (%s, %s, %s)",
                (SEED_VERSION, users, stories),
            )
            log("seed: done")
            return True
    finally:
        con.close()


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--stories", type=int, default=10000)
    parser.add_argument("--force", action="store_true", help="write the rows again even if already seeded")
    args, rest = parser.parse_known_args()
    config.parse([sys.argv[0]] + rest)
    db = config.mysql_settings()
    if not db["database"].startswith("storyhouse_bench_"):
        sys.exit("seed: the database name must start with storyhouse_bench_ (it is emptied)")
    seed(db, args.users, args.stories, args.force)


if __name__ == "__main__":
    main()
