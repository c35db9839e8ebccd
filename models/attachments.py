"""Attachments: the rows (SQL) and the files on disk under `upload_dir`.

A file is written to `tmp/<name>.part` as the request body streams in (on a small executor, one
piece after another), moved to `<aa>/<bb>/<name>` once the body is complete, and only then is its
row committed: a committed row always has its file. Anything that fails on the way removes the
files it made; what a crash leaves behind (temporary files, files without a row) the hourly
`sweep()` removes. The client's filename is metadata only, cleaned by `clean_filename()`.
"""

import asyncio
import datetime
import hashlib
import logging
import os
import re
import secrets
import time
import unicodedata
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import puremagic

from models.db import DatabaseUnavailable
from models.validate import valid_id

log = logging.getLogger("storyhouse.attachments")

MAX_FILENAME = 200  # characters (code points), not bytes
SNIFF_BYTES = 8192  # what the content-type sniffer looks at
BATCH_BYTES = 1024 * 1024  # disk work handed to a thread at a time (the loop reads on meanwhile)
STALE_SECONDS = 3600  # files untouched this long may be crash leftovers
_NAME = re.compile(r"[0-9a-f]{32}")
_TMP_NAME = re.compile(r"[0-9a-f]{32}\.part")
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL"} | {p + str(i) for p in ("COM", "LPT") for i in range(1, 10)}
_KEEP_FORMAT = {"\u200c", "\u200d"}  # ZWNJ/ZWJ join emoji and scripts; other format chars go (bidi tricks)
# Types a browser may show inline; everything else (HTML, SVG, XML, JavaScript, PDF, ...) downloads.
INLINE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp"}


# --- names, types, sizes -----------------------------------------------------------------


def clean_filename(raw):
    """The client's filename as safe metadata: no path parts, no control or format characters,
    no NUL, at most MAX_FILENAME characters (the extension kept), never empty."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    kept = []
    for c in name:
        category = unicodedata.category(c)
        if category in ("Zl", "Zp") or c in "\t\n\r":
            kept.append(" ")
        elif category[0] != "C" or c in _KEEP_FORMAT:
            kept.append(c)
    name = " ".join("".join(kept).split()).strip(" .")
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = _cut(stem, MAX_FILENAME - len(ext) - 1) + "." + ext
        else:
            name = _cut(name, MAX_FILENAME)
    if name.split(".", 1)[0].upper() in _WINDOWS_DEVICES:
        name = "_" + name
    return name or "file"


def _cut(text, length):
    """text cut to length code points, without leaving a dangling joiner or combining mark."""
    text = text[:length]
    while text and (text[-1] in _KEEP_FORMAT or unicodedata.category(text[-1]) in ("Mn", "Me", "Sk")):
        text = text[:-1]
    return text.rstrip(" .")


def sniff_type(head):
    """The content type told by the bytes themselves; text/plain for other UTF-8 text, else
    application/octet-stream. What the client claimed is never used."""
    if head:
        try:
            mime = puremagic.from_string(bytes(head), mime=True)
        except (puremagic.PureError, ValueError):
            mime = ""
        if mime and re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", mime.lower()):
            return mime.lower()
    try:
        text = bytes(head).decode("utf-8")
    except UnicodeDecodeError as e:
        # A multi-byte character cut by the end of the sniffed bytes is still text.
        if e.start < len(head) - 3 or len(head) < SNIFF_BYTES:
            return "application/octet-stream"
        text = bytes(head[: e.start]).decode("utf-8")
    if "\x00" in text:
        return "application/octet-stream"
    return "text/plain; charset=utf-8"


def is_inline(content_type):
    return content_type in INLINE_TYPES


def content_disposition(filename, inline=False):
    """RFC 6266: an ASCII fallback in filename=, the real name UTF-8 encoded in filename*=."""
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\;%' else "_" for c in filename)
    value = '%s; filename="%s"' % ("inline" if inline else "attachment", fallback)
    if fallback != filename:
        value += "; filename*=UTF-8''" + urllib.parse.quote(filename, safe="")
    return value


def human_size(size):
    """1 536 → '1.5 KB' (binary multiples, as file managers show them)."""
    if size < 1024:
        return "%d byte%s" % (size, "" if size == 1 else "s")
    for unit in ("KB", "MB", "GB", "TB"):
        size /= 1024.0
        if size < 1024 or unit == "TB":
            return ("%.1f %s" if size < 10 else "%.0f %s") % (size, unit)


# --- errors ------------------------------------------------------------------------------


TOO_LARGE = "That upload is too large: the limit is %(limit)s."
TOO_MANY = (
    "At most %(count)d file can be uploaded at once.",
    "At most %(count)d files can be uploaded at once.",
)


class UploadError(Exception):
    """An upload refused or failed: `status` and a sentence for the user, as a catalogue key
    (`message`, with `plural` when it counts) and its values (`limit` is a size in bytes)."""

    def __init__(self, status, message, plural=None, **values):
        super().__init__(message % values if values else message)
        self.status = status
        self.message = message
        self.plural = plural
        self.values = values


# --- one incoming file -------------------------------------------------------------------


class IncomingFile:
    """A file of a request, written to a temporary file. Methods whose names end in `_sync` run on
    the upload executor, strictly one after another for a given upload."""

    def __init__(self, store, filename):
        self.store = store
        self.filename = clean_filename(filename)
        self.name = secrets.token_hex(16)
        self.tmp_path = store.tmp_path(self.name)
        self.path = store.path(self.name)
        self.size = 0
        self.head = bytearray()
        self.content_type = None
        self.sha256 = None
        self._hash = hashlib.sha256()
        self._file = None
        self.placed = False

    def add(self, piece):
        """Count a piece (on the loop, so the limit is checked at once)."""
        self.size += len(piece)
        if len(self.head) < SNIFF_BYTES:
            self.head += piece[: SNIFF_BYTES - len(self.head)]

    def open_sync(self):
        # O_EXCL: a random name never meets an existing file; 0o640: not world-readable.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(self.tmp_path, flags, 0o640)
        except FileNotFoundError:  # tmp/ went away (or could not be made at start): once more
            os.makedirs(os.path.dirname(self.tmp_path), mode=0o750, exist_ok=True)
            fd = os.open(self.tmp_path, flags, 0o640)
        self._file = os.fdopen(fd, "wb", buffering=0)

    def write_sync(self, pieces):
        # One writev and one hash update a piece: no copy (the pieces are views of the chunks
        # Tornado read), and few calls that let go of the GIL and must win it back from the loop.
        fd = self._file.fileno()
        views = [memoryview(p) for p in pieces]
        while views:
            written = os.writev(fd, views)
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]
        for piece in pieces:
            self._hash.update(piece)

    def close_sync(self):
        self._file.close()
        self._file = None
        self.sha256 = self._hash.hexdigest()
        self.content_type = sniff_type(self.head)
        self.head = None

    def place_sync(self):
        """Move the complete file to its sharded home (same filesystem: an atomic rename)."""
        os.makedirs(os.path.dirname(self.path), mode=0o750, exist_ok=True)
        os.replace(self.tmp_path, self.path)
        self.placed = True

    def discard_sync(self):
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
        for path in (self.tmp_path, self.path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:  # the hourly sweep will try again
                log.warning("could not remove %s: %s", path, e)


# --- one upload request ------------------------------------------------------------------


class Upload:
    """The files of one request. The handler feeds it parser events; `flush()` hands the queued
    disk work (about BATCH_BYTES of it) to the executor and returns at once, after waiting for the
    previous batch: the loop reads and parses the next megabyte while a thread writes and hashes
    this one, and at most about two batches are ever held in memory."""

    def __init__(self, store, max_bytes, max_files):
        self.store = store
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.files = []
        self.current = None
        self.total = 0
        self._ops = []
        self._queued = 0  # bytes in self._ops
        self._start_now = False
        self._pending = None
        self.closed = False

    # parser events (on the loop) --------------------------------------------------------

    def begin_file(self, filename):
        if len(self.files) >= self.max_files:
            raise UploadError(400, TOO_MANY[0], TOO_MANY[1], count=self.max_files)
        self.current = IncomingFile(self.store, filename)
        self.files.append(self.current)
        self._ops.append((self.current.open_sync,))
        self._start_now = True  # create the temporary file at once, not a megabyte later

    def data(self, piece):
        if self.current is None:
            return
        self.total += len(piece)
        if self.total > self.max_bytes:
            raise UploadError(413, TOO_LARGE, limit=self.max_bytes)
        self._queued += len(piece)
        self.current.add(piece)
        last = self._ops[-1] if self._ops else None
        if last is not None and last[0] == self.current.write_sync:
            last[1].append(piece)  # the same file's write: one op per batch
        else:
            self._ops.append((self.current.write_sync, [piece]))

    def end_file(self):
        if self.current is not None:
            self._ops.append((self.current.close_sync,))
            self.current = None

    # disk work ----------------------------------------------------------------------------

    @staticmethod
    def _run(ops):
        for op, *args in ops:
            op(*args)

    async def _wait(self):
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                await pending
            except OSError as e:
                raise self.store.write_error(e) from e

    async def flush(self, force=False):
        """Start the queued disk work once there is a batch of it (or with force), after waiting
        for the previous batch; a failed batch raises here as an UploadError."""
        if self._pending is not None and self._pending.done():
            await self._wait()  # report a write error as soon as it is known
        if self.closed or not self._ops or (self._queued < BATCH_BYTES and not (force or self._start_now)):
            return
        await self._wait()
        if self.closed:
            return
        ops, self._ops, self._queued, self._start_now = self._ops, [], 0, False
        self._pending = asyncio.get_running_loop().run_in_executor(self.store.executor, self._run, ops)

    async def commit(self, story_id, user_id):
        """Finish the files, move them home and commit their rows in one transaction; returns the
        new rows. On failure nothing is kept (see `discard`)."""
        try:
            await self.flush(force=True)
            await self._wait()
            await self.store.run(self._run, [(f.place_sync,) for f in self.files])
        except BaseException:
            await self.discard()
            raise
        try:
            ids = await self.store.insert(story_id, user_id, self.files)
        except DatabaseUnavailable:
            # The commit may still happen on its thread (a timed-out query is not a rolled-back
            # one): leave the files; the sweep removes them within the hour if no row appeared.
            self.closed = True
            raise
        except BaseException:
            await self.discard()
            raise
        if ids is None:
            await self.discard()
            raise UploadError(404, "That story no longer exists.")
        self.closed = True
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)  # as the row's default
        return [
            dict(
                id=id_,
                story_id=story_id,
                created_at=now,
                filename=f.filename,
                content_type=f.content_type,
                size=f.size,
                sha256=f.sha256,
            )
            for id_, f in zip(ids, self.files, strict=True)
        ]

    async def discard(self):
        """Remove every file of this upload (idempotent; safe while a batch is still writing)."""
        if self.closed:
            return
        self.closed = True
        self._ops = []
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                await pending
            except Exception:
                pass
        files, self.files = self.files, []
        if files:
            await self.store.run(self._run, [(f.discard_sync,) for f in files])


# --- the model -----------------------------------------------------------------------------


_COLUMNS = (
    "SELECT id, story_id, storage_name, filename, content_type, size, sha256, created_at FROM attachments"
)


class Attachments:
    def __init__(self, db, cache, root, max_upload_mb, max_files=20, threads=4):
        self.db = db
        self.cache = cache  # models.cache.PageCache: story pages show their files
        self.root = os.path.abspath(root)
        self.max_upload_bytes = max_upload_mb * 1024 * 1024
        self.max_files = max_files
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="uploads")
        try:
            os.makedirs(self.tmp_dir, mode=0o750, exist_ok=True)
        except OSError as e:  # the site still serves; each upload answers a clear error instead
            log.error("upload_dir %s is not usable: %s", self.root, e)

    @property
    def tmp_dir(self):
        return os.path.join(self.root, "tmp")

    def tmp_path(self, name):
        return os.path.join(self.tmp_dir, name + ".part")

    def relative_path(self, name):
        """Where a stored file lives, relative to the root: two levels of shards."""
        return os.path.join(name[:2], name[2:4], name)

    def path(self, name):
        return os.path.join(self.root, self.relative_path(name))

    def write_error(self, exc):
        log.warning("upload write failed: %s", exc)
        if exc.errno in (28, 27, 122):  # ENOSPC, EFBIG, EDQUOT
            return UploadError(507, "The server has no room for this file right now. Nothing was saved.")
        return UploadError(500, "The file could not be saved on the server. Nothing was saved.")

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def new_upload(self):
        return Upload(self, self.max_upload_bytes, self.max_files)

    # rows ---------------------------------------------------------------------------------

    async def get(self, attachment_id):
        if not valid_id(attachment_id):
            return None
        return await self.db.fetch_one(_COLUMNS + " WHERE id = %s", (attachment_id,))

    async def for_story(self, story_id):
        return await self.db.fetch_all(_COLUMNS + " WHERE story_id = %s ORDER BY id", (story_id,))

    async def insert(self, story_id, user_id, files):
        """Rows for the files, if user_id still owns the story (locked against a delete while we
        insert); returns their ids, or None when the story is gone or not theirs."""

        def insert(cur):
            cur.execute(
                "SELECT id FROM stories WHERE id = %s AND user_id = %s LOCK IN SHARE MODE",
                (story_id, user_id),
            )
            if cur.fetchone() is None:
                return None
            ids = []
            for f in files:
                cur.execute(
                    "INSERT INTO attachments (story_id, storage_name, filename, content_type, size, sha256)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (story_id, f.name, f.filename, f.content_type, f.size, f.sha256),
                )
                ids.append(cur.lastrowid)
            return ids

        ids = await self.db.transaction(insert)
        if ids:
            self.cache.bump()
        return ids

    @staticmethod
    def lock_story_files(cur, story_id):
        """Inside the story's delete transaction: the storage names of its attachments (whose rows
        the foreign key's ON DELETE CASCADE removes with the story)."""
        cur.execute("SELECT storage_name FROM attachments WHERE story_id = %s FOR UPDATE", (story_id,))
        return [row["storage_name"] for row in cur.fetchall()]

    # files ---------------------------------------------------------------------------------

    def _unlink_sync(self, names):
        for name in names:
            try:
                os.unlink(self.path(name))
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("could not remove %s: %s", name, e)

    async def remove_files(self, names):
        """Delete stored files (after their rows' delete has committed)."""
        if names:
            await self.run(self._unlink_sync, list(names))

    @staticmethod
    def _entries(path):
        """The entries of a folder, or none if it is not there."""
        try:
            with os.scandir(path) as entries:
                return list(entries)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _stale_sync(self, max_age):
        """(stale temporary files, names of stale stored files), by modification time."""
        cutoff = time.time() - max_age
        tmp = [
            e.path
            for e in self._entries(self.tmp_dir)
            if _TMP_NAME.fullmatch(e.name) and e.stat(follow_symlinks=False).st_mtime < cutoff
        ]
        stored = []
        for top in self._entries(self.root):
            if not (re.fullmatch(r"[0-9a-f]{2}", top.name) and top.is_dir(follow_symlinks=False)):
                continue
            for mid in self._entries(top.path):
                if mid.is_dir(follow_symlinks=False):
                    stored += [
                        e.name
                        for e in self._entries(mid.path)
                        if _NAME.fullmatch(e.name) and e.stat(follow_symlinks=False).st_mtime < cutoff
                    ]
        return tmp, stored

    def _remove_paths_sync(self, paths):
        for path in paths:
            try:
                os.unlink(path)
            except OSError:
                pass

    async def sweep(self, max_age=STALE_SECONDS):
        """Remove temporary files left by a crash and stored files without a row, both only when
        older than max_age (an upload in progress, or one about to commit, is younger).
        Returns (temporary files removed, orphans removed)."""
        tmp, stored = await self.run(self._stale_sync, max_age)
        await self.run(self._remove_paths_sync, tmp)
        orphans = []
        for i in range(0, len(stored), 500):
            batch = stored[i : i + 500]
            marks = ", ".join(["%s"] * len(batch))  # only placeholders are joined into the SQL
            rows = await self.db.fetch_all(
                "SELECT storage_name FROM attachments WHERE storage_name IN (" + marks + ")",  # noqa: S608
                batch,
            )
            known = {row["storage_name"] for row in rows}
            orphans += [name for name in batch if name not in known]
        await self.remove_files(orphans)
        return len(tmp), len(orphans)

    def close(self):
        self.executor.shutdown(wait=False, cancel_futures=True)
