"""The Application: the whole route table (named routes) and the objects handlers share."""

import logging
from concurrent.futures import ThreadPoolExecutor

import tornado.web
from tornado.web import url

import config
from models.bus import make_bus
from models.chat import ChatMessages
from models.db import Database, DatabaseUnavailable, HealthProbe
from models.passwords import Passwords
from models.sessions import Sessions
from models.stories import Stories
from models.throttle import LoginThrottle
from models.users import Users
from views import account, auth, base, chat, health, index, modules, stories

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
        handler.request.path,
        handler.request.remote_ip,
        1000.0 * handler.request.request_time(),
    )


class Application(tornado.web.Application):
    def __init__(self, db_settings=None, pool_size=None, **overrides):
        db_settings = db_settings or config.mysql_settings()
        settings = config.settings(**overrides)
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
        self.stories = Stories(self.db, self.render_executor)
        self.throttle = LoginThrottle(self.db)
        self.allowed_hosts = settings["allowed_hosts"]
        self.in_flight = set()  # handlers between prepare() and finish(), for a graceful stop
        self.draining = False
        self.websockets = set()
        bus = make_bus(settings["redis_url"], settings["chat_redis_prefix"])
        self.chat = chat.Room(  # started by server.py
            ChatMessages(self.db),
            self.sessions,
            bus,
            ping_interval=settings["websocket_ping_interval"],
            ping_timeout=settings["websocket_ping_timeout"],
        )

        acct = dict(users=self.users, passwords=self.passwords)
        story = dict(stories=self.stories)
        routes = [
            # pages
            url(r"/", index.IndexHandler, story, name="index"),
            url(r"/theme", index.ThemeHandler, name="theme"),
            # stories
            url(r"/story/new", stories.StoryNewHandler, story, name="story_new"),
            url(r"/story/([0-9]{1,10})", stories.StoryHandler, story, name="story"),
            url(r"/story/([0-9]{1,10})/", stories.StorySlashHandler, name="story_slash"),
            url(r"/story/([0-9]{1,10})/edit", stories.StoryEditHandler, story, name="story_edit"),
            url(r"/story/([0-9]{1,10})/delete", stories.StoryDeleteHandler, story, name="story_delete"),
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
        super().__init__(routes, **settings)

    def find_handler(self, request, **kwargs):
        # Host check before anything else runs; /healthz is exempt (load balancers probe by IP).
        if self.allowed_hosts and request.path != self.reverse_url("healthz"):
            if request.host_name.lower() not in self.allowed_hosts:
                return self.get_handler_delegate(request, base.BadHostHandler)
        return super().find_handler(request, **kwargs)

    async def housekeeping(self):
        """Hourly (server.py runs it with a PeriodicCallback): drop expired sessions and old failures."""
        try:
            sessions = await self.sessions.delete_expired()
            failures = await self.throttle.delete_old()
        except DatabaseUnavailable:
            return  # next hour, then
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
