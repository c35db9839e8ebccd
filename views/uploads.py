"""POST /story/<id>/attachments (a streamed multipart upload, owner only) and GET /attachments/<id>.

The upload's body is never held whole: Tornado hands it over in chunks (`@stream_request_body`),
python-multipart parses each chunk as it comes, and each file's bytes go to a temporary file in
`upload_dir` (models/attachments.py). Everything that can refuse the request (XSRF, session, owner,
size, content type) is checked in `prepare()`, before a byte is stored.
"""

import copy
import re

import tornado.ioloop
import tornado.web
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from models.attachments import UploadError, content_disposition, human_size, is_inline
from views import i18n
from views.base import ERROR_MESSAGES, BaseHandler, StaticFileHandler
from views.stories import MAX_ID

READ_CHUNK = 1024 * 1024  # see read_in_large_chunks()
ENVELOPE_BYTES = 64 * 1024  # multipart boundaries and part headers on top of the files themselves
FIELD = "files"
# Messages of models/attachments.py with a value in them, recognised to be translated.
TOO_LARGE_RE = re.compile(r"That upload is too large: the limit is (?P<limit>.+)\.")
TOO_MANY_RE = re.compile(r"At most (?P<count>[0-9]+) files can be uploaded at once\.")


def describe(handler, row):
    """An attachment as the page script and the JSON answer see it."""
    return dict(
        id=row["id"],
        filename=row["filename"],
        size=row["size"],
        size_human=i18n.size_text(handler.locale, row["size"]),  # shown by the page script
        content_type=row["content_type"],
        sha256=row["sha256"],
        url=handler.reverse_url("attachment", row["id"]),
        image=is_inline(row["content_type"]),
    )


@tornado.web.stream_request_body
class UploadHandler(BaseHandler):
    """Files for a story, streamed to disk. Answers JSON to the page script (Accept:
    application/json) and a redirect with a flash message to the plain form."""

    error_message = None
    upload = None

    def initialize(self, stories, attachments):
        self.stories = stories
        self.attachments = attachments
        self.body_bytes = 0
        self.complete = False  # the multipart body ended properly
        self.body_done = False  # post() owns the outcome from here on

    def wants_json(self):
        return "application/json" in self.request.headers.get("Accept", "")

    # --- before the body --------------------------------------------------------------------

    async def prepare(self):
        # Tornado has already checked the XSRF token (header or query argument) and the Origin.
        await super().prepare()
        if not self.current_user:
            self.error_message = self.locale.translate("Log in to attach files.")
            raise tornado.web.HTTPError(403)
        story_id = int(self.path_args[0])
        story = await self.stories.get(story_id) if story_id <= MAX_ID else None
        if story is None:
            raise tornado.web.HTTPError(404)
        if story["user_id"] != self.current_user["id"]:
            self.error_message = self.locale.translate("Only the story's author can attach files to it.")
            raise tornado.web.HTTPError(403)
        self.story = story

        limit = self.attachments.max_upload_bytes + ENVELOPE_BYTES
        length = self.request.headers.get("Content-Length")
        if length is not None and (not (length.isascii() and length.isdigit()) or int(length) > limit):
            self.error_message = self.too_large_text()
            raise tornado.web.HTTPError(413)
        ctype, params = parse_options_header(self.request.headers.get("Content-Type", ""))
        boundary = params.get(b"boundary", b"")
        if ctype != b"multipart/form-data" or not 1 <= len(boundary) <= 70:
            _ = self.locale.translate
            self.error_message = _("Send the files as multipart/form-data (an upload form).")
            raise tornado.web.HTTPError(400)

        self.max_body = limit
        # This route alone accepts large bodies: the connection's limit is raised for this request
        # only (above ours, so that our own check answers 413 first), and so is the body timeout.
        self.request.connection.set_max_body_size(2 * limit)
        self.request.connection.set_body_timeout(60 + (int(length) if length else limit) / 100_000)
        self.read_in_large_chunks()
        self.upload = self.attachments.new_upload()
        self.parser = MultipartParser(
            boundary,
            dict(
                on_part_begin=self.on_part_begin,
                on_header_field=self.on_header_field,
                on_header_value=self.on_header_value,
                on_header_end=self.on_header_end,
                on_headers_finished=self.on_headers_finished,
                on_part_data=self.on_part_data,
                on_part_end=self.upload.end_file,
                on_end=self.on_end,
            ),
        )

    def read_in_large_chunks(self):
        """Read this body a megabyte at a time instead of the server's 64 KB: a sixteenth of the
        calls through the IOStream, the parser and the executor (measured: about twice the
        throughput). This request's connection only (its own copy of the parameters), and the
        stream gets its usual size back when the request ends (small requests stay cheap)."""
        conn = self.request.connection
        conn.params = copy.copy(conn.params)
        conn.params.chunk_size = READ_CHUNK
        self.usual_read_chunk = conn.stream.read_chunk_size
        conn.stream.read_chunk_size = READ_CHUNK

    def on_finish(self):
        super().on_finish()
        if getattr(self, "usual_read_chunk", None):
            self.request.connection.stream.read_chunk_size = self.usual_read_chunk

    # --- parser events (run inside parser.write, on the loop) -------------------------------

    def on_part_begin(self):
        self.part_headers = {}
        self.header_field = bytearray()
        self.header_value = bytearray()

    def on_header_field(self, data, start, end):
        self.header_field += data[start:end]

    def on_header_value(self, data, start, end):
        self.header_value += data[start:end]

    def on_header_end(self):
        self.part_headers[bytes(self.header_field).lower()] = bytes(self.header_value)
        self.header_field = bytearray()
        self.header_value = bytearray()

    def on_headers_finished(self):
        disposition, params = parse_options_header(self.part_headers.get(b"content-disposition", b""))
        filename = params.get(b"filename")
        # A form sent with no file chosen has a part with an empty filename: not a file.
        if disposition == b"form-data" and params.get(b"name") == FIELD.encode() and filename:
            # Browsers send the name as raw UTF-8; the parser read the header as latin-1.
            self.upload.begin_file(filename.decode("utf-8", "replace"))

    def on_part_data(self, data, start, end):
        self.upload.data(memoryview(data)[start:end])

    def on_end(self):
        self.complete = True

    # --- the body -----------------------------------------------------------------------------

    async def data_received(self, chunk):
        if self._finished or self.upload is None or self.upload.closed:
            return
        self.body_bytes += len(chunk)
        try:
            if self.body_bytes > self.max_body:
                raise UploadError(413, self.too_large_text())
            try:
                self.parser.write(chunk)
            except FormParserError:
                message = self.locale.translate("The upload was not valid multipart/form-data.")
                raise UploadError(400, message) from None
            await self.upload.flush()
        except UploadError as e:
            await self.fail(e.status, e.message)

    async def fail(self, status, message):
        """Remove what this upload wrote, then answer (the connection closes: the rest of the
        body is never read)."""
        await self.upload.discard()
        if not self._finished:
            self.error_message = self.translate_message(message)
            self.send_error(status)

    def on_connection_close(self):
        # The client went away mid-body (or the body timed out): keep nothing. Once post() runs
        # it decides (a commit in progress must not lose its files).
        super().on_connection_close()
        if self.upload is not None and not self.body_done:
            tornado.ioloop.IOLoop.current().add_callback(self.upload.discard)

    async def post(self, story_id):
        self.body_done = True
        self.parser.finalize()
        if not self.complete:
            return await self.fail(400, self.locale.translate("The upload was incomplete."))
        if not self.upload.files:
            await self.upload.discard()
            if self.wants_json():
                self.error_message = self.locale.translate("Choose at least one file.")
                raise tornado.web.HTTPError(400)
            self.set_flash(self.locale.translate("Choose at least one file to attach."))
            return self.redirect(self.reverse_url("story", self.story["id"]))
        try:
            rows = await self.upload.commit(self.story["id"], self.current_user["id"])
        except UploadError as e:
            self.error_message = self.translate_message(e.message)
            raise tornado.web.HTTPError(e.status) from None
        if self.wants_json():
            self.set_status(201)
            return self.finish({"items": [describe(self, row) for row in rows]})
        count = len(rows)
        message = self.locale.translate("%(count)d file attached.", "%(count)d files attached.", count)
        self.set_flash(message % {"count": count})
        self.redirect(self.reverse_url("story", self.story["id"]) + "#attachments")

    # --- errors ---------------------------------------------------------------------------------

    def too_large_text(self, limit_text=None):
        limit = limit_text or human_size(self.attachments.max_upload_bytes)
        return self.locale.translate("That upload is too large: the limit is %(limit)s.") % {"limit": limit}

    def translate_message(self, message):
        """A message from models/attachments.py (English, some with a number in it) in the
        reader's language."""
        match = TOO_LARGE_RE.fullmatch(message)
        if match:
            return self.too_large_text(limit_text=match["limit"])
        match = TOO_MANY_RE.fullmatch(message)
        if match:
            count = int(match["count"])
            text = self.locale.translate(
                "At most %(count)d file can be uploaded at once.",
                "At most %(count)d files can be uploaded at once.",
                count,
            )
            return text % {"count": count}
        return self.locale.translate(message)

    def write_error(self, status_code, **kwargs):
        message = self.error_message
        if not self.wants_json():
            if message is None:
                return super().write_error(status_code, **kwargs)
            return self.render(
                "error.html",
                status_code=status_code,
                title=self.locale.translate(i18n.status_title(status_code, self._reason)),
                message=message,
                trace=None,
            )
        if message is None:
            exc = kwargs.get("exc_info")
            error = str(exc[1]).lower() if exc else ""
            if status_code == 403 and ("xsrf" in error or "origin" in error):
                message = "This page has expired or came from another site. Reload it and try again."
            else:
                message = ERROR_MESSAGES.get(status_code, self._reason)
            message = self.locale.translate(message)
        self.finish({"error": {"status": status_code, "message": message}})


class AttachmentHandler(StaticFileHandler):
    """GET /attachments/<id>: Tornado's static file machinery (chunks, ETag, Range) on the stored
    file, with the original name and the recorded type. Only images may show inline."""

    def initialize(self, attachments):
        super().initialize(path=attachments.root)
        self.attachments = attachments
        self.row = None

    async def get(self, attachment_id, include_body=True):
        self.row = await self.attachments.get(int(attachment_id)) if int(attachment_id) <= MAX_ID else None
        if self.row is None:
            raise tornado.web.HTTPError(404)
        await super().get(self.attachments.relative_path(self.row["storage_name"]), include_body)

    def compute_etag(self):
        return '"%s"' % self.row["sha256"]  # recorded at upload: the file is never read to make one

    def get_content_type(self):
        return self.row["content_type"]

    # The bytes at an id never change (an upload gets a new id; MariaDB keeps AUTO_INCREMENT over
    # restarts, so no id is reused): a browser may keep them a year without asking ("immutable").
    # "private", though: a shared cache (CDN, proxy) must not go on serving a deleted story's file,
    # which the app answers with 404 from the moment of the delete. No Expires (get_cache_time 0):
    # an HTTP/1.0 cache reads Expires and ignores Cache-Control: private.
    CACHE_CONTROL = "private, max-age=31536000, immutable"

    def get_cache_time(self, path, modified, mime_type):
        return 0

    def set_extra_headers(self, path):
        self.set_header("Cache-Control", self.CACHE_CONTROL)
        inline = is_inline(self.row["content_type"])
        self.set_header("Content-Disposition", content_disposition(self.row["filename"], inline))
        self.set_header("X-Content-Type-Options", "nosniff")
        # Even if a browser did render it, the file runs nothing and loads nothing.
        self.set_header("Content-Security-Policy", "default-src 'none'; sandbox")
