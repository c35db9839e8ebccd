"""serving/tracking.py's body limit for forms and the API, however the body is sent: a body over
1 MB with a Content-Length or sent chunked gets the site's 413 (a page, or JSON for the API), is
dropped unread past the limit, and the client reads the answer; smaller chunked bodies work."""

import json
import urllib.parse

import pytest

from tests.helpers import query
from views.forms import MESSAGES


def chunked(data, piece=64 * 1024):
    """A body_producer: `data` in chunks, so the client sends Transfer-Encoding: chunked."""

    async def produce(write):
        for i in range(0, len(data), piece):
            await write(data[i : i + piece])

    return produce


async def post_chunked(client, path, data, content_type, headers=None):
    headers = dict(headers or {}, **{"Content-Type": content_type})
    return await client.fetch(path, "POST", body_producer=chunked(data), headers=headers)


def form(client, **fields):
    return urllib.parse.urlencode(dict(fields, _xsrf=client.xsrf)).encode()


@pytest.mark.gen_test(timeout=30)
async def test_a_chunked_story_over_one_megabyte_gets_the_413_page(client, db_settings):
    await client.register("alice")
    r = await post_chunked(
        client,
        "/story/new",
        form(client, title="Big", body="a" * 1_100_000),
        "application/x-www-form-urlencoded",
    )
    assert r.code == 413, r.body[:300]
    assert MESSAGES["form_too_large"] in r.body.decode()
    assert "<html" in r.body.decode()  # the site's page, not Tornado's bare 400
    assert query(db_settings, "SELECT COUNT(*) AS n FROM stories")[0]["n"] == 0
    assert (await client.get("/")).code == 200  # the session and the server are fine


@pytest.mark.gen_test(timeout=30)
async def test_a_small_chunked_form_is_read_as_usual(client, db_settings):
    await client.register("alice")
    r = await post_chunked(
        client,
        "/story/new",
        form(client, title="Chunked", body="Sent in pieces."),
        "application/x-www-form-urlencoded",
    )
    assert r.code == 302, r.body[:300]
    assert query(db_settings, "SELECT title FROM stories") == [{"title": "Chunked"}]


@pytest.mark.gen_test(timeout=30)
async def test_a_chunked_api_body_over_one_megabyte_gets_a_json_413(http_server, client, db_settings):
    await client.register("alice")
    data = json.dumps({"title": "Big", "body": "a" * 1_100_000}).encode()
    r = await post_chunked(
        client, "/api/stories", data, "application/json", headers={"X-XSRFToken": client.xsrf}
    )
    assert r.code == 413, r.body[:300]
    assert json.loads(r.body)["error"] == {"status": 413, "message": "The body is too large: at most 768 KB."}
    assert query(db_settings, "SELECT COUNT(*) AS n FROM stories")[0]["n"] == 0
