"""The Application: the whole route table (named routes) and the objects handlers share."""

import logging
from concurrent.futures import ThreadPoolExecutor

import tornado.httputil
import tornado.web
from tornado.web import url

import config
from models.attachments import Attachments
from models.bus import make_bus
from models.cache import Versioned
from models.chat import ChatMessages
from models.db import Database, DatabaseUnavailable, HealthProbe
from models.passwords import Passwords
from models.previews import LinkPreviews
from models.sessions import Sessions
from models.stories import Stories
from models.throttle import LoginThrottle
from models.tokens import ApiTokens
from models.users import Users
from views import (
    account,
    api,
    auth,
    base,
    chat,
    compression,
    feed,
    health,
    i18n,
    index,
    lang,
    modules,
    stories,
    tokens,
    uploads,
)

access_log = logging.getLogger("tornado.access")


def log_request(handler):
    """Tornado's access log without the query string (an upload form's action carries _xsrf)."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    access_log.log(
        level,
        "%d %s %s (%s) %.2fms",
        status,
        handler.request.method,
        base.loggable_path(handler.request),
        handler.request.remote_ip,
        1000.0 * handler.request.request_time(),
    )


class RequestTracker(tornado.httputil.HTTPMessageDelegate):
    """Wraps the delegate of every routed request, from its headers on:

    - the request counts as in flight while its body is still arriving, so a graceful stop waits
      for a slow upload or form instead of cutting it (the handler's finish ends the count);
    - a body over the form limit (`config.MAX_BODY_BYTES`) is read to its end and dropped, instead
      of Tornado closing the connection on a client still sending (the browser shows a reset):
      the handler then answers 413 with the site's page (`request.body_too_large`). Reading stops
      at DISCARD_LIMIT; past that, Tornado's own 400-and-close. Handlers that stream their body
      (`@stream_request_body`) set their own limits and get every byte.
    """

    DISCARD_LIMIT = 64 * 1024 * 1024

    def __init__(self, app, request, inner, streams):
        self.app, self.request, self.inner, self.streams = app, request, inner, streams
        self.received = 0

    def headers_received(self, start_line, headers):
        self.app.in_flight.add(self.request)
        self.request.body_too_large = False
        if not self.streams:
            length = headers.get("Content-Length", "")
            # isascii: "²".isdigit() is True, int("²") raises (Tornado itself answers it with 400).
            if length.isascii() and length.isdigit() and int(length) > config.MAX_BODY_BYTES:
                self.request.body_too_large = True
                self.request.connection.set_max_body_size(self.DISCARD_LIMIT)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk):
        self.received += len(chunk)
        if self.received > config.MAX_BODY_BYTES and not self.streams:
            self.request.body_too_large = True
        if self.request.body_too_large:
            return None  # dropped: nothing over the limit is kept in memory
        return self.inner.data_received(chunk)

    def finish(self):
        self.inner.finish()

    def on_connection_close(self):
        self.app.in_flight.discard(self.request)
        self.inner.on_connection_close()


class Application(tornado.web.Application):
    def __init__(self, db_settings=None, pool_size=None, **overrides):
        db_settings = db_settings or config.mysql_settings()
        settings = config.settings(**overrides)
        i18n.load()  # locale/*.csv, once per process
        self.db = Database(
            **db_settings,
            pool_size=pool_size or config.options.mysql_pool_size,
            query_timeout=config.options.mysql_query_timeout,
        )
        self.health = HealthProbe(**db_settings)
        self.passwords = Passwords(**settings["argon2"])
        self.users = Users(self.db)
        self.sessions = Sessions(self.db, days=settings["session_days"])
        self.render_executor = ThreadPoolExecutor(1, thread_name_prefix="markdown")
        self.attachments = Attachments(self.db, settings["upload_dir"], settings["max_upload_mb"])
        self.page_cache = Versioned(ttl=settings["page_cache_seconds"])
        self.stories = Stories(self.db, self.render_executor, self.page_cache, attachments=self.attachments)
        self.throttle = LoginThrottle(self.db)
        self.tokens = ApiTokens(self.db)
        self.previews = LinkPreviews(
            self.db,
            enabled=settings["link_previews"],
            allow_private=settings["link_preview_allow_private"],
            **settings.get("link_preview_test_options", {}),  # tests: an exempt loopback upstream
        )
        self.allowed_hosts = settings["allowed_hosts"]
        self.in_flight = set()  # requests from their headers to their answer, for a graceful stop
        self.draining = False
        self.websockets = set()
        bus = make_bus(settings["redis_url"], settings["chat_redis_prefix"])
        self.chat = chat.Room(  # started by server.py
            ChatMessages(self.db),
            self.sessions,
            bus,
            ping_interval=settings["websocket_ping_interval"],
            ping_timeout=settings["websocket_ping_timeout"],
            on_cache_event=self.page_cache.changed_elsewhere,
        )
        self.attachments.on_change = self.previews.on_change = self.page_cache.bump
        # Story writes empty the page cache of the other machines too (through Redis when set).
        self.page_cache.announce = lambda: bus.publish({"type": "cache"})

        acct = dict(users=self.users, passwords=self.passwords)
        story = dict(stories=self.stories)
        files = dict(attachments=self.attachments)
        api_story = dict(story, previews=self.previews, attachments=self.attachments)
        routes = [
            # pages
            url(r"/", index.IndexHandler, story, name="index"),
            url(r"/theme", index.ThemeHandler, name="theme"),
            url(r"/lang", lang.LangHandler, name="lang"),
            # stories
            url(r"/story/new", stories.StoryNewHandler, story, name="story_new"),
            url(r"/story/([0-9]{1,10})", stories.StoryHandler, story, name="story"),
            url(r"/story/([0-9]{1,10})/", stories.StorySlashHandler, name="story_slash"),
            url(r"/story/([0-9]{1,10})/edit", stories.StoryEditHandler, story, name="story_edit"),
            url(r"/story/([0-9]{1,10})/delete", stories.StoryDeleteHandler, story, name="story_delete"),
            # attachments: streamed upload (owner only), download
            url(
                r"/story/([0-9]{1,10})/attachments",
                uploads.UploadHandler,
                dict(story, attachments=self.attachments),
                name="story_attachments",
            ),
            url(r"/attachments/([0-9]{1,10})", uploads.AttachmentHandler, files, name="attachment"),
            # accounts
            url(r"/register", auth.RegisterHandler, acct, name="register"),
            url(r"/login", auth.LoginHandler, dict(acct, throttle=self.throttle), name="login"),
            url(r"/logout", auth.LogoutHandler, name="logout"),
            url(r"/account", account.AccountHandler, acct, name="account"),
            url(
                r"/account/password",
                account.PasswordChangeHandler,
                dict(acct, throttle=self.throttle),
                name="account_password",
            ),
            url(r"/account/sessions/revoke", account.SessionRevokeHandler, name="account_revoke"),
            url(r"/account/tokens", tokens.TokenCreateHandler, acct, name="account_tokens"),
            url(r"/account/tokens/revoke", tokens.TokenRevokeHandler, name="account_token_revoke"),
            # JSON API (views/api.py); every other /api/ path answers a JSON 404
            url(r"/api/stories", api.StoriesApiHandler, api_story, name="api_stories"),
            url(r"/api/stories/([0-9]{1,10})", api.StoryApiHandler, api_story, name="api_story"),
            url(r"/api/me", api.MeHandler, name="api_me"),
            url(r"/api/openapi.json", api.OpenApiHandler, name="api_openapi"),
            url(r"/api(?:/.*)?", api.ApiNotFoundHandler, name="api_not_found"),
            # feeds
            url(r"/feed\.atom", feed.FeedHandler, story, name="feed"),
            # chat
            url(r"/chat", chat.ChatPageHandler, name="chat"),
            url(r"/chat/ws", chat.ChatSocketHandler, dict(room=self.chat), name="chat_ws"),
            # operations
            url(r"/healthz", health.HealthHandler, name="healthz"),
        ]
        settings.update(
            log_function=log_request,
            ui_modules=modules,
            default_handler_class=base.NotFoundHandler,
            static_handler_class=base.StaticFileHandler,
        )
        transforms = [compression.TextCompression] if settings["compress_response"] else []
        super().__init__(routes, transforms=transforms, **settings)

    def find_handler(self, request, **kwargs):
        # Host check before anything else runs; /healthz is exempt (load balancers probe by IP).
        if self.allowed_hosts and request.path != self.reverse_url("healthz"):
            if request.host_name.lower() not in self.allowed_hosts:
                return self.get_handler_delegate(request, base.BadHostHandler)
        return super().find_handler(request, **kwargs)

    def get_handler_delegate(self, request, target_class, *args, **kwargs):
        inner = super().get_handler_delegate(request, target_class, *args, **kwargs)
        streams = getattr(target_class, "_stream_request_body", False)  # set by @stream_request_body
        return RequestTracker(self, request, inner, streams)

    def log_request(self, handler):
        # Called once per answered request (RequestHandler.finish): it is no longer in flight.
        self.in_flight.discard(handler.request)
        super().log_request(handler)

    async def housekeeping(self):
        """Hourly (server.py runs it with a PeriodicCallback): drop expired sessions, old failures,
        and upload files a crash left behind."""
        try:
            sessions = await self.sessions.delete_expired()
            failures = await self.throttle.delete_old()
            await self.users.delete_old_registration_ips()
            await self.stories.delete_old_creations()
            swept = await self.attachments.sweep()
        except DatabaseUnavailable:
            return  # next hour, then
        if any(swept):
            logging.getLogger("storyhouse").info(
                "housekeeping: %d temporary upload files and %d files without a row removed", *swept
            )
        if sessions or failures:
            logging.getLogger("storyhouse").info(
                "housekeeping: %d expired sessions, %d old login failures removed", sessions, failures
            )

    async def close_websockets(self):
        """Close open WebSockets with 1001 (going away), after telling the other processes."""
        await self.chat.close()
        for ws in list(self.websockets):
            ws.close(1001, "server shutting down")

    def close(self):
        self.db.close()
        self.health.close()
        self.passwords.close()
        self.render_executor.shutdown(wait=False, cancel_futures=True)
        self.attachments.close()
        self.previews.close()
