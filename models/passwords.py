"""argon2id hashing on a small executor of its own: a hash costs tens of milliseconds of CPU."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    def __init__(self, threads=2, **argon2_params):
        self._hasher = PasswordHasher(**argon2_params)  # argon2id by default
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="argon2")
        # Unknown users are checked against a real hash, so timing does not tell which names
        # exist; it is made on the executor at first use, not on the IOLoop at start.
        self._dummy_hash = None

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def hash(self, password):
        return await self._run(self._hasher.hash, password)

    def _verify(self, password_hash, password):
        if not password_hash and self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash("storyhouse-dummy-password")
        try:
            return self._hasher.verify(password_hash or self._dummy_hash, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    async def verify(self, password_hash, password):
        """True when password matches; with password_hash None, spends the same time and says False."""
        return await self._run(self._verify, password_hash, password)

    def close(self):
        self._executor.shutdown(wait=False, cancel_futures=True)
