"""One upload request's files on their way to disk: each file streams into `tmp/<name>.part` (on the
attachments' small executor, one piece after another), and the whole upload is moved home and its
rows committed at the end, or removed. Used by views/uploads.py, chunk by chunk."""

import asyncio
import datetime
import hashlib
import logging
import os
import secrets

from models.db import DatabaseUnavailable
from models.filenames import SNIFF_BYTES, clean_filename, sniff_type

log = logging.getLogger("storyhouse.attachments")

BATCH_BYTES = 1024 * 1024  # disk work handed to a thread at a time (the loop reads on meanwhile)


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
