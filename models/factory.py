"""Builds every model of one process from the settings, wired together: who shares the database,
the bus and the page cache is decided here and nowhere else."""

from concurrent.futures import ThreadPoolExecutor

from models.attachments import Attachments
from models.bus import make_bus
from models.cache import PageCache
from models.chat import ChatMessages
from models.db import Database, HealthProbe
from models.passwords import Passwords
from models.previews import LinkPreviews
from models.replicas import Replicas
from models.room import Room
from models.sessions import Sessions
from models.stories import Stories
from models.throttle import LoginThrottle
from models.tokens import ApiTokens
from models.users import Users


class Models:
    """The models of one process (the Application holds one: `app.models`)."""

    def __init__(self, settings, db_settings, pool_size, query_timeout):
        replicas = Replicas(
            settings["mysql_replicas"],
            db_settings["user"],
            db_settings["password"],
            db_settings["database"],
            pool_size=pool_size,
            query_timeout=query_timeout,
            max_lag=settings["mysql_replica_max_lag"],
        )
        self.db = Database(**db_settings, pool_size=pool_size, query_timeout=query_timeout, replicas=replicas)
        self.health = HealthProbe(**db_settings)  # /healthz: its own thread and connection
        self.bus = make_bus(settings["redis_url"], settings["chat_redis_prefix"])
        self.page_cache = PageCache(ttl=settings["page_cache_seconds"], bus=self.bus)
        self.passwords = Passwords(**settings["argon2"])
        self.sessions = Sessions(
            self.db, self.bus, days=settings["session_days"], cache_seconds=settings["session_cache_seconds"]
        )
        self.users = Users(self.db, self.sessions)
        self.throttle = LoginThrottle(self.db)
        self.tokens = ApiTokens(self.db)
        self.attachments = Attachments(
            self.db, self.page_cache, settings["upload_dir"], settings["max_upload_mb"]
        )
        # Markdown is CPU work: one thread of its own, so renders queue instead of contending
        # with the loop for the GIL.
        self.render_executor = ThreadPoolExecutor(1, thread_name_prefix="markdown")
        self.previews = LinkPreviews(
            self.db,
            self.page_cache,
            enabled=settings["link_previews"],
            allow_private=settings["link_preview_allow_private"],
            **settings.get("link_preview_test_options", {}),  # tests: an exempt loopback upstream
        )
        self.stories = Stories(
            self.db,
            self.render_executor,
            self.page_cache,
            attachments=self.attachments,
            previews=self.previews,
        )
        self.room = Room(
            ChatMessages(self.db),
            self.sessions,
            self.bus,
            ping_interval=settings["websocket_ping_interval"],
            ping_timeout=settings["websocket_ping_timeout"],
        )

    async def start(self):
        """On the serving loop: the bus (Redis reconnects in the background), the chat's pinger."""
        await self.bus.start()
        await self.db.replicas.start()
        self.room.start()

    async def stop(self):
        self.room.stop()
        await self.db.replicas.stop()
        await self.bus.stop()

    def close(self):
        self.db.close()
        self.health.close()
        self.passwords.close()
        self.render_executor.shutdown(wait=False, cancel_futures=True)
        self.attachments.close()
        self.previews.close()
