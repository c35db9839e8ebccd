"""What the index and a story's byline say about a story: the excerpt from its first paragraph,
its reading time (CJK counted by characters), both made at save time and, for stories saved
before migration 011, once by migrate.backfill_reading; the headings' outline; what kind of file
an attachment is."""

import pytest

from models import markdown, migrate, reading
from tests.conftest import TEST_DATABASE
from tests.helpers import query, raw_connection
from views import filekinds

# --- the excerpt ---------------------------------------------------------------------------------

FLATTENED = """# A first-level heading

## A second-level heading

- First item in a list
- Second item

The first real paragraph, with *emphasis* and a [link](https://example.org/).

Another paragraph.
"""


def excerpt_of(body):
    return markdown.excerpt(markdown.render(body))


def test_the_excerpt_is_the_first_paragraph_not_the_headings_and_lists():
    assert excerpt_of(FLATTENED) == "The first real paragraph, with emphasis and a link."


@pytest.mark.parametrize(
    "body,want",
    [
        ("> A quotation first.\n\nThen the paragraph.", "Then the paragraph."),  # not the quotation's
        ("- one\n\n- two\n\nAfter the loose list.", "After the loose list."),  # not the <p> inside <li>
        ("![a photo](/attachments/1)\n\nThe caption below.", "The caption below."),  # a paragraph with text
        ("```\ncode <p>not a paragraph</p>\n```\n\nText.", "Text."),
        ("| a |\n|---|\n| 1 |\n\nBelow the table.", "Below the table."),
        ("Tom & Jerry <3", "Tom & Jerry <3"),  # plain text: entities decoded (the page escapes it again)
        ("- only\n- a list", "only a list"),  # no paragraph at all: the opening text
        ("灯整夜转着。\n\n第二段。", "灯整夜转着。"),
    ],
)
def test_excerpt_cases(body, want):
    assert excerpt_of(body) == want


def test_a_long_paragraph_is_cut_at_a_word():
    words = "lighthouse " * 40
    got = excerpt_of(words)
    assert got.endswith("lighthouse…") and len(got) <= markdown.EXCERPT_CHARS + 1
    assert excerpt_of("x" * 300) == "x" * 280 + "…"  # no space to cut at: the hard limit
    assert excerpt_of("灯" * 300) == "灯" * 280 + "…"


# --- reading time ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,minutes",
    [
        ("", 1),
        ("word " * 100, 1),
        ("word " * 220 * 5, 5),
        ("字" * 400 * 3, 3),  # Chinese is counted by characters, not by (absent) spaces
        ("字" * 400 * 2 + " word" * 220 * 2, 4),
        ("かな" * 400, 2),
    ],
)
def test_reading_minutes(text, minutes):
    assert reading.minutes(text) == minutes


@pytest.mark.gen_test
async def test_reading_time_is_stored_at_save_and_shown(client, db_settings):
    await client.register("alice", "correct horse")
    story_id = await client.new_story("Long", "word " * 1100)
    zh_id = await client.new_story("长", "字" * 2000)
    rows = {r["id"]: r for r in query(db_settings, "SELECT id, reading_minutes FROM stories")}
    assert rows[story_id]["reading_minutes"] == 5 and rows[zh_id]["reading_minutes"] == 5
    page = (await client.get("/story/%d" % story_id)).body.decode()
    assert "· 5 min read" in page
    index = (await client.get("/")).body.decode()
    assert index.count("· 5 min read") == 2
    client.cookies["lang"] = "zh_CN"
    assert "阅读约 5 分钟" in (await client.get("/story/%d" % zh_id)).body.decode()
    r = await client.post("/story/%d/edit" % story_id, {"title": "Short now", "body": "word " * 10})
    assert r.code == 302
    assert query(db_settings, "SELECT reading_minutes FROM stories WHERE id = %s", (story_id,))[0] == {
        "reading_minutes": 1
    }


def test_backfill_remakes_old_excerpts_and_reading_times(clean_db):
    """Stories saved before migration 011: NULL reading time and a flattened excerpt."""
    body_html = markdown.render(FLATTENED + "\n" + "more words " * 300)
    con = raw_connection(clean_db, TEST_DATABASE)
    try:
        with con.cursor() as cur:
            cur.execute("INSERT INTO users (username, password_hash) VALUES ('old', 'x')")
            cur.execute(
                "INSERT INTO stories (user_id, title, body, body_html, excerpt, reading_minutes)"
                " VALUES (LAST_INSERT_ID(), 'Old', %s, %s, %s, NULL)",
                (FLATTENED, body_html, "A first-level heading A second-level heading First item"),
            )
            migrate.backfill_reading(cur, batch=1)  # batches: the loop goes on past a full one
            cur.execute("SELECT excerpt, reading_minutes FROM stories")
            row = cur.fetchone()
    finally:
        con.close()
    assert row["excerpt"].startswith("The first real paragraph, with emphasis")
    assert row["reading_minutes"] == 3


def test_migrate_runs_the_backfill(clean_db):
    con = raw_connection(clean_db, TEST_DATABASE)
    try:
        with con.cursor() as cur:
            cur.execute("INSERT INTO users (username, password_hash) VALUES ('old', 'x')")
            cur.execute(
                "INSERT INTO stories (user_id, title, body, body_html, excerpt)"
                " VALUES (LAST_INSERT_ID(), 'Old', 'x', '<h2>Head</h2>\\n<p>Para.</p>\\n', 'Head Para.')"
            )
    finally:
        con.close()
    migrate.migrate(**clean_db)
    assert query(clean_db, "SELECT excerpt, reading_minutes FROM stories") == [
        {"excerpt": "Para.", "reading_minutes": 1}
    ]


# --- the outline of a story's headings -----------------------------------------------------------


@pytest.mark.parametrize(
    "body,levels",
    [
        ("# A\n\n## B\n\n### C", [2, 3, 4]),  # under the page's h1 (the title)
        ("### A\n\n### B", [2, 2]),  # no h3 straight after the title's h1
        ("## A\n\n#### B\n\n## C", [2, 3, 2]),  # no gap from h2 to h4
        ("# A\n\n###### F", [2, 3]),
    ],
)
def test_story_headings_follow_the_title(body, levels):
    html = markdown.render(body)
    import re

    assert [int(n) for n in re.findall(r"<h(\d)>", html)] == levels
    assert len(re.findall(r"</h\d>", html)) == len(levels)


def test_code_and_tables_scroll_and_take_the_keyboard():
    html = markdown.render("```\nx\n```\n\n| a |\n|---|\n| 1 |")
    assert '<pre tabindex="0"><code>' in html
    assert '<figure class="table-scroll" tabindex="0"><table>' in html
    assert " />" not in markdown.render("![a](/x.png)\n\n---\n\nline  \nbreak")  # HTML, not XHTML


# --- file kinds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type,label",
    [
        ("text/plain; charset=utf-8", "Text file"),
        ("image/png", "Image"),
        ("application/pdf", "PDF document"),
        ("application/zip", "Archive"),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "Document"),
        ("audio/mpeg", "Audio"),
        ("application/octet-stream", "File"),
        ("", "File"),
    ],
)
def test_file_kinds(content_type, label):
    assert filekinds.kind(content_type) == label
