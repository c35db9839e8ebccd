"""A site full of content for the accessibility/validator tests and the docs screenshots: members,
two pages of stories spread over the last weeks, one story with Markdown of every kind, a Chinese
story, attachments (an image among them) and link preview cards written straight into their table."""

import json
import struct
import uuid
import zlib

from models.links import url_hash
from tests import serverproc as sp

PASSWORD = "correct horse battery"
WRITER, ZH_WRITER, READER = "mara_lind", "lin_wei", "reader_one"
PREVIEW_URL = "http://127.0.0.1:9/notes/lighthouses"  # never fetched: its card is inserted directly

EVERYTHING = """Lighthouses were the first machines built to be seen. This one has stood on the point
since 1874, and its keepers left notes: weather, ships, the price of oil.

## The keeper's log

Every night the same entries, in the same order:

1. Light the lamp at sunset
2. Wind the clockwork every *four* hours
   - check the weights
   - oil the **bearings**
3. Write down every ship that passes

### What the log says

> The fog came in at nine and did not leave. We sounded the horn until dawn.
>
> — Entry of 3 March 1911

A table of the lamps they used:

| Year | Lamp | Range (miles) |
|:-----|:----:|--------------:|
| 1874 | Oil wick | 12 |
| 1911 | Paraffin vapour | 18 |
| 1952 | Electric | 24 |

#### Code

The clockwork's schedule, as a program would say it (a long line, to show the block scrolls):

```python
def wind(clockwork, every_hours=4, weights=("north", "south"), notes="the weights never touch the floor"):
    for weight in weights:
        clockwork.wind(weight, hours=every_hours)
```

Inline `code`, ~~struck out~~ text, a [link to the notes](http://127.0.0.1:9/notes/lighthouses)
and a mail link: <mailto:keeper@example.org>.

![The tower at dusk](/attachments/1)

---

Raw HTML is shown as it was typed: <b>not bold</b>, <script>alert(1)</script>.
"""

ZH_STORY = (
    "灯塔看守人的笔记",
    "灯整夜转着，他在本子上记下每一艘经过的船：名字、方向、天气。三十年里，本子写满了四十二本。\n\n"
    "## 第一本\n\n雾来的那天晚上，他敲了一夜的钟。天亮的时候，海面上什么也没有，只有海鸥。\n\n"
    "- 煤油：两桶\n- 灯芯：六根\n- 面包：一袋",
)

# (title, body): the index's two pages, newest last; a few long enough for a longer reading time.
STORIES = [
    ("Notes from a slow train", "Three hours to cross a valley. I counted the tunnels and lost count."),
    ("What the baker knew", "Bread rises when it is ready, not when you are. *Patience* is an ingredient."),
    ("The lighthouse keeper's daughter", "She learned the ships by their lights before she learned to read."),
    ("A field guide to puddles", "Some are for jumping, some for looking into, and a few are for neither."),
    ("Letters I did not send", "Dear reader, this is the fourth draft. " * 60),
    ("The night ferry", "It left at **midnight**, the gulls asleep on the rail."),
    ("On keeping bees", "The hive hums in a key I cannot name. " * 30),
    ("A map of my grandmother's kitchen", "The kettle was the capital; the radio, a distant province."),
    ("Winter tomatoes", "They taste of nothing, and we buy them anyway, out of hope."),
    ("The last video shop", "Rewind before returning, said the sign, long after nobody could."),
    ("How to fold a fitted sheet", "You do not. You roll it up and close the cupboard quickly."),
    ("Rain on a tin roof", "It is the only drum I ever learned to listen to. " * 20),
    ("The cartographer's mistake", "An island that never was stayed on the maps for ninety years."),
    ("Second-hand books", "Someone underlined the saddest line in pencil, and I agree with them."),
    ("Learning the cello at forty", "My fingers remember nothing, my ears everything."),
    ("A short history of queues", "The British did not invent them, but they did perfect the sigh."),
    ("The owl in the chimney", "For three nights we thought the house was haunted. It was hungry."),
    ("Night shift at the observatory", "Clouds, then clouds, then for eleven minutes, Saturn."),
    ("What the river took", "A boot, a bicycle, and most of the old bridge. " * 40),
    ("Postcards from nowhere", "The stamp was worth more than the view, and the view was lovely."),
    ("The quiet carriage", "Nobody speaks, and everybody listens to everybody not speaking."),
    ("Counting swifts", "They sleep on the wing. I can barely sleep in a bed."),
]


def png(width=960, height=360):
    """A valid PNG, a dusk sky from violet to amber (an attachment with a thumbnail)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    top, bottom = (58, 52, 98), (236, 160, 92)
    rows = []
    for y in range(height):
        t = y / max(1, height - 1)
        rows.append(b"\x00" + bytes(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)) * width)
    raw = zlib.compress(b"".join(rows))
    head = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def member(port, username):
    browser = sp.Browser(port)
    r = browser.register(username, PASSWORD)
    assert r.status == 302, r.text
    return browser


def publish(browser, title, body):
    r = browser.post("/story/new", {"title": title, "body": body})
    assert r.status == 302, r.text
    return int(r.headers["Location"].rsplit("/", 1)[1])


def upload(browser, story_id, files):
    """files: [(filename, bytes)], through the streamed upload route as the page script sends it."""
    boundary = "content%s" % uuid.uuid4().hex
    body = b""
    for name, data in files:
        body += (
            (
                '--%s\r\nContent-Disposition: form-data; name="files"; filename="%s"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n" % (boundary, name)
            ).encode()
            + data
            + b"\r\n"
        )
    body += ("--%s--\r\n" % boundary).encode()
    r = browser.fetch(
        "POST",
        "/story/%d/attachments" % story_id,
        body,
        {
            "Content-Type": "multipart/form-data; boundary=" + boundary,
            "X-XSRFToken": browser.cookies["_xsrf"],
            "Accept": "application/json",
        },
    )
    assert r.status == 201, r.text
    return json.loads(r.body)["items"]


def seed(port, database):
    """Fill a fresh site; returns {"writer": Browser, "reader": Browser, "rich": id, "zh": id,
    "plain": id} (the writer owns every English story, the reader none)."""
    writer = member(port, WRITER)
    zh_writer = member(port, ZH_WRITER)
    reader = member(port, READER)
    ids = [publish(writer, title, body) for title, body in STORIES]
    zh = publish(zh_writer, *ZH_STORY)
    rich = publish(writer, "What the lighthouse keepers wrote down", EVERYTHING)
    con = sp.mysql_connection(database)
    try:
        with con.cursor() as cur:
            # Spread the dates over the last weeks (newest = highest id), so relative dates vary.
            hours = [3 * 24 * 7 - i * 20 for i in range(len(ids))]
            for story_id, back in zip(ids, hours, strict=True):
                cur.execute(
                    "UPDATE stories SET created_at = NOW() - INTERVAL %s HOUR,"
                    " updated_at = NOW() - INTERVAL %s HOUR WHERE id = %s",
                    (back, back, story_id),
                )
            cur.execute(
                "UPDATE stories SET created_at = NOW() - INTERVAL 3 HOUR,"
                " updated_at = NOW() - INTERVAL 3 HOUR WHERE id = %s",
                (zh,),
            )
            cur.execute(
                "UPDATE stories SET created_at = NOW() - INTERVAL 7 MINUTE,"
                " updated_at = NOW() - INTERVAL 7 MINUTE WHERE id = %s",
                (rich,),
            )
            cur.execute(
                "INSERT INTO link_previews (url_hash, url, ok, title, description)"
                " VALUES (%s, %s, 1, %s, %s)",
                (
                    url_hash(PREVIEW_URL),
                    PREVIEW_URL,
                    "The keepers' notes, transcribed",
                    "Forty-two notebooks of weather, ships and the price of oil, 1874–1952.",
                ),
            )
        con.commit()
    finally:
        con.close()
    upload(writer, rich, [("tower at dusk.png", png()), ("keeper's log 1911.txt", b"Fog at nine.\n" * 4000)])
    return {
        "writer": writer,
        "reader": reader,
        "zh_writer": zh_writer,
        "rich": rich,
        "zh": zh,
        "plain": ids[-1],
    }
