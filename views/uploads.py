"""POST /story/<id>/attachments (a streamed multipart upload, owner only) and GET /attachments/<id>.

The upload's body is never held whole: Tornado hands it over in chunks (`@stream_request_body`),
python-multipart parses each chunk as it comes, and each file's bytes go to a temporary file in
`upload_dir` (models/attachments.py). Everything that can refuse the request (XSRF, session, owner,
size, content type) is checked in `prepare()`, before a byte is stored.
"""

import tornado.ioloop
import tornado.web
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from models.db import iso
from models.filenames import content_disposition, is_inline
from models.uploads import TOO_LARGE, UploadError
from models.validate import whole_number
from serving.tornado_internals import read_in_large_chunks
from views import i18n
from views.base import PageHandler, StaticFileHandler
from views.errors import Refusal, error_message
from views.stories import StoryLookup

READ_CHUNK = 1024 * 1024  # see serving.tornado_internals.read_in_large_chunks()
ENVELOPE_BYTES = 64 * 1024  # part headers and non-file parts on top of the files themselves
EXTRA_PARTS = 8  # parts besides the files a form may send (_xsrf, a submit button, ...)
FIELD = "files"


def attachment_json(handler, row):
    """An attachment as the page script, the upload's JSON answer and the API see it."""
    return dict(
        id=row["id"],
        filename=row["filename"],
        size=row["size"],
        size_human=i18n.size_text(handler.locale, row["size"]),  # shown by the page script
        content_type=row["content_type"],
        sha256=row["sha256"],
        created_at=iso(row["created_at"]),
        url="%s://%s%s"
        % (handler.request.protocol, handler.request.host, handler.reverse_url("attachment", row["id"])),
        image=is_inline(row["content_type"]),
    )


@tornado.web.stream_request_body
class UploadHandler(StoryLookup, PageHandler):
    """Files for a story, streamed to disk. Answers JSON to the page script (Accept:
    application/json) and a redirect with a flash message to the plain form."""

    not_yours = "Only the story's author can attach files to it."
    xsrf_message = "This page has expired or came from another site. Reload it and try again."
    upload = None
    restore_chunk_size = None

    def initialize(self, stories, attachments):
        self.stories = stories
        self.attachments = attachments
        self.body_bytes = 0
        self.complete = False  # the multipart body ended properly
        self.body_done = False  # post() owns the outcome from here on
        self.parts = 0
        self.envelope = 0  # bytes of part headers and of parts that are not files
        self.answered = False  # an error answer went out: the rest of the body is ignored

    def wants_json(self):
        return "application/json" in self.request.headers.get("Accept", "")

    # --- before the body --------------------------------------------------------------------

    async def prepare(self):
        # Tornado has already checked the XSRF token (header or query argument) and the Origin.
        await super().prepare()
        if not self.current_user:
            raise Refusal(403, "Log in to attach files.")
        self.story = await self.find_story(self.path_args[0], check_owner=True)

        limit = self.attachments.max_upload_bytes + ENVELOPE_BYTES
        length = self.request.headers.get("Content-Length")
        if length is not None and (whole_number(length) is None or int(length) > limit):
            raise self.too_large()
        ctype, params = parse_options_header(self.request.headers.get("Content-Type", ""))
        boundary = params.get(b"boundary", b"")
        if ctype != b"multipart/form-data" or not 1 <= len(boundary) <= 70:
            raise Refusal(400, "Send the files as multipart/form-data (an upload form).")

        self.max_body = limit
        # This route alone accepts large bodies: the connection's limit is raised for this request
        # only (above ours, so that our own check answers 413 first), and so is the body timeout.
        self.request.connection.set_max_body_size(2 * limit)
        self.request.connection.set_body_timeout(60 + (int(length) if length else limit) / 100_000)
        self.restore_chunk_size = read_in_large_chunks(self.request, READ_CHUNK)
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

    def on_finish(self):
        super().on_finish()
        self.answered = True
        if self.restore_chunk_size:
            self.restore_chunk_size()  # small requests on this connection stay cheap

    # --- parser events (run inside parser.write, on the loop) -------------------------------

    def on_part_begin(self):
        self.parts += 1
        if self.parts > self.attachments.max_files + EXTRA_PARTS:
            raise UploadError(400, "This upload has too many parts: send only the files.")
        self.part_headers = {}
        self.header_field = bytearray()
        self.header_value = bytearray()

    def on_header_field(self, data, start, end):
        self.count_envelope(end - start)
        self.header_field += data[start:end]

    def on_header_value(self, data, start, end):
        self.count_envelope(end - start)
        self.header_value += data[start:end]

    def count_envelope(self, size):
        self.envelope += size
        if self.envelope > ENVELOPE_BYTES:
            raise UploadError(400, "This upload has too much besides its files: send only the files.")

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
        if self.upload.current is None:  # a field, not a file: kept by nobody, counted
            self.count_envelope(end - start)
        self.upload.data(memoryview(data)[start:end])

    def on_end(self):
        self.complete = True

    # --- the body -----------------------------------------------------------------------------

    async def data_received(self, chunk):
        if self.answered or self.upload is None or self.upload.closed:
            return
        self.body_bytes += len(chunk)
        try:
            if self.body_bytes > self.max_body:
                raise UploadError(413, TOO_LARGE, limit=self.attachments.max_upload_bytes)
            try:
                self.parser.write(chunk)
            except FormParserError:
                raise UploadError(400, "The upload was not valid multipart/form-data.") from None
            await self.upload.flush()
        except UploadError as e:
            await self.fail(self.refusal(e))

    async def fail(self, error):
        """Remove what this upload wrote, then answer (the connection closes: the rest of the
        body is never read)."""
        await self.upload.discard()
        if not self.answered:
            self.send_error(error.status_code, exc_info=(type(error), error, None))

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
            return await self.fail(Refusal(400, "The upload was incomplete."))
        if not self.upload.files:
            await self.upload.discard()
            if self.wants_json():
                raise Refusal(400, "Choose at least one file.")
            self.set_flash(self.locale.translate("Choose at least one file to attach."))
            return self.redirect(self.reverse_url("story", self.story["id"]))
        try:
            rows = await self.upload.commit(self.story["id"], self.current_user["id"])
        except UploadError as e:
            raise self.refusal(e) from None
        if self.wants_json():
            self.set_status(201)
            self.wrote()  # the page script reloads nothing, but the next page must show them
            return self.finish({"items": [attachment_json(self, row) for row in rows]})
        count = len(rows)
        message = self.locale.translate("%(count)d file attached.", "%(count)d files attached.", count)
        self.set_flash(message % {"count": count})
        self.redirect(self.reverse_url("story", self.story["id"]) + "#attachments")

    # --- errors ---------------------------------------------------------------------------------

    def refusal(self, error):
        """A models.uploads.UploadError as the Refusal this handler answers with (a size
        limit in the reader's words)."""
        values = dict(error.values)
        if "limit" in values:
            values["limit"] = i18n.size_text(self.locale, values["limit"])
        return Refusal(error.status, error.message, error.plural, **values)

    def too_large(self):
        return self.refusal(UploadError(413, TOO_LARGE, limit=self.attachments.max_upload_bytes))

    def write_error(self, status_code, **kwargs):
        headers = self.request.headers
        has_body = headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in headers
        if has_body and not self.body_done:
            # Refused before its body is read (so a client that waits, or sends Expect:
            # 100-continue, need not send it): Tornado closes the connection after this answer,
            # and a client about to reuse it should know.
            self.set_header("Connection", "close")
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if status_code == 413 and not isinstance(exc, Refusal):
            kwargs["exc_info"] = (Refusal, self.too_large(), None)
            exc = kwargs["exc_info"][1]
        if not self.wants_json():
            return super().write_error(status_code, **kwargs)
        self.finish({"error": {"status": status_code, "message": error_message(self, status_code, exc)}})


class AttachmentHandler(StaticFileHandler):
    """GET /attachments/<id>: Tornado's static file machinery (chunks, ETag, Range) on the stored
    file, with the original name and the recorded type. Only images may show inline."""

    def initialize(self, attachments):
        super().initialize(path=attachments.root)
        self.attachments = attachments
        self.row = None

    async def get(self, attachment_id, include_body=True):
        self.row = await self.attachments.get(int(attachment_id))
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
