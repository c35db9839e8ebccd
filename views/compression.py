"""gzip for the app's text answers (pages, CSS, JS, JSON, the feeds), never for files members uploaded.

Tornado's own transform (the `compress_response` setting) with three answers left alone:
attachments (anything sent with Content-Disposition: an uploaded file goes out byte for byte, its
strong ETag is the SHA-256 of those bytes, and a text file is no exception), partial content (a
206 whose Content-Range counts the file's own bytes, not a gzip stream of a slice of them), and
images (SVG included: Tornado counts it as text). Already-compressed types (images, archives,
fonts) are never on the list. A compressed answer's ETag is made weak, as nginx does. The XSRF
token in every form is masked afresh for each answer (Tornado's version 2 token), so compressing
pages that reflect input gives BREACH nothing to find.
"""

from tornado.web import GZipContentEncoding


class TextCompression(GZipContentEncoding):
    CONTENT_TYPES = GZipContentEncoding.CONTENT_TYPES - {"image/svg+xml"}

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        if status_code == 206 or "Content-Disposition" in headers:
            self._gzipping = False
        status_code, headers, chunk = super().transform_first_chunk(status_code, headers, chunk, finishing)
        etag = headers.get("Etag", "")
        if self._gzipping and etag.startswith('"'):
            # Other bytes than the identity answer's: the same strong ETag would claim the same
            # bytes (RFC 9110, 8.8.1). Weak, it still matches If-None-Match (a weak comparison).
            headers["Etag"] = "W/" + etag
        return status_code, headers, chunk
