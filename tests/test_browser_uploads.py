"""Attachments in Debian's Chromium against server.py run as a process: two files chosen in the
story page's form, the progress bar at 100 %, both listed without a reload, one downloaded; and
the same form with JavaScript off."""

import hashlib
import os

import pytest

from tests import serverproc as sp
from tests.browser import PASSWORD, Watched, log_in
from tests.helpers import PNG, binary

DB = sp.database_name("web_uploads")
pytestmark = [pytest.mark.browser]


def stored_count(upload_dir):
    return sum(len(names) for _, _, names in os.walk(upload_dir))


@pytest.fixture(scope="module")
def upload_site(tmp_path_factory):
    """A fresh server with its own database and upload_dir, a member and a story of theirs."""
    upload_dir = str(tmp_path_factory.mktemp("uploads"))
    sp.drop_databases(DB)
    try:
        with sp.running_server(DB, extra=["--upload_dir=" + upload_dir, "--max_upload_mb=2"]) as (
            server,
            port,
        ):
            member = sp.Browser(port)
            assert member.register("uploader", PASSWORD).status == 302
            r = member.post("/story/new", {"title": "With files", "body": "See the attachments."})
            assert r.status == 302
            yield "http://127.0.0.1:%d" % port, r.headers["Location"], upload_dir
    finally:
        sp.drop_databases(DB)


def test_upload_two_files_with_progress_and_download_one(browser_context, upload_site, tmp_path):
    from playwright.sync_api import expect

    base, story_path, upload_dir = upload_site
    before = stored_count(upload_dir)
    notes = tmp_path / "notes 中文.txt"
    notes.write_bytes(b"Notes for the story.\n" * 1000)
    blob = tmp_path / "blob.bin"
    blob.write_bytes(binary(1536 * 1024))  # big enough for progress events along the way
    too_big = tmp_path / "too big.bin"
    too_big.write_bytes(binary(3 * 1024 * 1024))  # over the site's 2 MB

    context = browser_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(15000)
    watched = Watched(context)
    page = watched.page
    log_in(page, base, "uploader")
    watched.goto(base + story_path)
    expect(page.locator("#attachments-empty")).to_be_visible()
    page.set_input_files("#upload-files", [str(notes), str(blob)])
    page.locator("#upload-form").get_by_role("button", name="Upload").click()

    status = page.locator("#upload-status")
    expect(status).to_contain_text("100 %")
    expect(status).to_contain_text("2 files attached")
    assert page.locator("#upload-progress").evaluate("p => p.value") == 100
    assert page.locator("#upload-progress").is_visible()
    names = page.locator("#attachment-list .attachment-name")
    expect(names).to_have_text(["notes 中文.txt", "blob.bin"])
    kinds = page.locator("#attachment-list .attachment-meta")  # what a file is, not its MIME type
    expect(kinds).to_have_text(["Text file · 21 KB", "File · 1.5 MB"])
    expect(page.locator("#attachments-empty")).to_be_hidden()
    watched.check()
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload

    with page.expect_download() as download_info:
        names.first.click()
    download = download_info.value
    assert download.suggested_filename == "notes 中文.txt"
    with open(download.path(), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == hashlib.sha256(notes.read_bytes()).hexdigest()

    # after a reload the list comes from the server
    watched.goto(base + story_path)
    expect(page.locator("#attachment-list .attachment-name")).to_have_text(["notes 中文.txt", "blob.bin"])
    expect(page.locator("#attachment-list .attachment-meta").nth(1)).to_contain_text("1.5 MB")
    expect(kinds).to_have_text(["Text file · 21 KB", "File · 1.5 MB"])

    # a file over the limit is refused in the page, with a sentence, before any byte is sent
    page.set_input_files("#upload-files", [str(too_big)])
    page.locator("#upload-form").get_by_role("button", name="Upload").click()
    expect(status).to_have_text("That upload is too large (3.0 MB): the limit is 2.0 MB.")
    watched.check()
    context.close()  # as a user leaving: then the count (the fixture would close it after the test)
    assert stored_count(upload_dir) == before + 2


def test_the_plain_form_works_without_javascript(browser_context, upload_site, tmp_path):
    from playwright.sync_api import expect

    base, story_path, upload_dir = upload_site
    before = stored_count(upload_dir)
    photo = tmp_path / "pixel.png"
    photo.write_bytes(PNG)
    context = browser_context(java_script_enabled=False)
    context.set_default_timeout(15000)
    page = context.new_page()
    log_in(page, base, "uploader")
    page.goto(base + story_path)
    page.set_input_files("#upload-files", [str(photo)])
    page.locator("#upload-form").get_by_role("button", name="Upload").click()
    expect(page).to_have_url(base + story_path + "#attachments")
    expect(page.locator(".flash")).to_have_text("1 file attached.")
    expect(page.locator("#attachment-list .attachment-name").last).to_have_text("pixel.png")
    thumb = page.locator("#attachment-list img.thumb").last
    expect(thumb).to_be_visible()
    assert thumb.evaluate("img => img.naturalWidth") == 1  # served inline, decoded as an image

    # too large: the server's 413 page, with its sentence (the browser shows it, no reset)
    too_big = tmp_path / "too big.bin"
    too_big.write_bytes(binary(3 * 1024 * 1024))
    page.set_input_files("#upload-files", [str(too_big)])
    page.locator("#upload-form").get_by_role("button", name="Upload").click()
    expect(page.locator("h1")).to_have_text("413 · Request Entity Too Large")
    expect(page.locator("main")).to_contain_text("That upload is too large: the limit is 2.0 MB.")
    context.close()
    assert stored_count(upload_dir) == before + 1  # the pixel; nothing of the refused file


def test_files_dropped_on_the_zone_are_chosen_and_uploaded(chromium, upload_site):  # noqa: F811
    from playwright.sync_api import expect

    base, story_path, _upload_dir = upload_site
    context = chromium.new_context(viewport={"width": 390, "height": 844})
    context.set_default_timeout(15000)
    try:
        watched = Watched(context)
        page = watched.page
        log_in(page, base, "uploader")
        watched.goto(base + story_path)
        zone = page.locator("#drop-zone")
        # What a browser hands the page when files are dropped: a DataTransfer with Files in it.
        page.evaluate(
            """() => {
              const data = new DataTransfer();
              data.items.add(new File(["Notes dropped on the zone.\\n".repeat(100)], "dropped.txt"));
              const zone = document.getElementById("drop-zone");
              const init = {dataTransfer: data, bubbles: true, cancelable: true};
              zone.dispatchEvent(new DragEvent("dragover", init));
              window.__dragging = zone.classList.contains("dragging");
              zone.dispatchEvent(new DragEvent("drop", init));
            }"""
        )
        assert page.evaluate("window.__dragging") is True  # the zone shows it takes the files
        expect(zone).not_to_have_class("drop-zone dragging")
        expect(page.locator("#upload-status")).to_have_text("1 file chosen (2.6 KB).")
        assert page.locator("#upload-files").evaluate("input => input.files[0].name") == "dropped.txt"
        page.locator("#upload-form").get_by_role("button", name="Upload").click()
        expect(page.locator("#upload-status")).to_contain_text("1 file attached")
        expect(page.locator("#attachment-list .attachment-name").last).to_have_text("dropped.txt")
        expect(page.locator("#attachment-list .attachment-meta").last).to_have_text("Text file · 2.6 KB")
        width = page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 390, "the story page is %dpx wide on a 390px phone" % width
        watched.check()
    finally:
        context.close()
