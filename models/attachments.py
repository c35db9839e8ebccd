"""Attachments: the rows (SQL) and the stored files under `upload_dir`.

A file is written to `tmp/<name>.part` as the request body streams in (models/uploads.py), moved to
`<aa>/<bb>/<name>` once the body is complete, and only then is its row committed: a committed row
always has its file. Anything that fails on the way removes the files it made; what a crash leaves
behind (temporary files, files without a row) the hourly `sweep()` removes. The client's filename
is metadata only (models/filenames.py).
"""

import asyncio
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

from models.uploads import Upload, UploadError
from models.validate import valid_id

log = logging.getLogger("storyhouse.attachments")

STALE_SECONDS = 3600  # files untouched this long may be crash leftovers
_NAME = re.compile(r"[0-9a-f]{32}")
_TMP_NAME = re.compile(r"[0-9a-f]{32}\.part")


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
