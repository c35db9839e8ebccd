"""The Application: the settings and the whole route table (named routes); the models it serves
are built by models/factory.py, the request tracking comes from serving/tracking.py."""

from tornado.web import url

import config
from models.factory import Models
from serving.tracking import TrackingApplication
from views import (
    account,
    api,
    api_stories,
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

ID = r"([0-9]{1,10})"  # an id in a path: at most 10 digits (models.validate.valid_id says which exist)


class Application(TrackingApplication):
    def __init__(self, db_settings=None, pool_size=None, **overrides):
        settings = config.settings(**overrides)
        i18n.load()  # locale/*.csv, once per process
        self.models = m = Models(
            settings,
            db_settings or config.mysql_settings(),
            pool_size=pool_size or config.options.mysql_pool_size,
            query_timeout=config.options.mysql_query_timeout,
        )
        self.allowed_hosts = settings["allowed_hosts"]
        acct = dict(users=m.users, passwords=m.passwords)
        story = dict(stories=m.stories)
        api_story = dict(story, previews=m.previews, attachments=m.attachments)
        routes = [
            # pages
            url(r"/", index.IndexHandler, story, name="index"),
            url(r"/theme", index.ThemeHandler, name="theme"),
            url(r"/lang", lang.LangHandler, name="lang"),
            # stories
            url(r"/story/new", stories.StoryNewHandler, story, name="story_new"),
            url(r"/story/%s" % ID, stories.StoryHandler, story, name="story"),
            url(r"/story/%s/" % ID, stories.StorySlashHandler, name="story_slash"),
            url(r"/story/%s/edit" % ID, stories.StoryEditHandler, story, name="story_edit"),
            url(r"/story/%s/delete" % ID, stories.StoryDeleteHandler, story, name="story_delete"),
            # attachments: streamed upload (owner only), download
            url(
                r"/story/%s/attachments" % ID,
                uploads.UploadHandler,
                dict(story, attachments=m.attachments),
                name="story_attachments",
            ),
            url(
                r"/attachments/%s" % ID,
                uploads.AttachmentHandler,
                dict(attachments=m.attachments),
                name="attachment",
            ),
            # accounts
            url(r"/register", auth.RegisterHandler, acct, name="register"),
            url(r"/login", auth.LoginHandler, dict(acct, throttle=m.throttle), name="login"),
            url(r"/logout", auth.LogoutHandler, name="logout"),
            url(r"/account", account.AccountHandler, acct, name="account"),
            url(
                r"/account/password",
                account.PasswordChangeHandler,
                dict(acct, throttle=m.throttle),
                name="account_password",
            ),
            url(r"/account/sessions/revoke", account.SessionRevokeHandler, name="account_revoke"),
            url(r"/account/tokens", tokens.TokenCreateHandler, acct, name="account_tokens"),
            url(r"/account/tokens/revoke", tokens.TokenRevokeHandler, name="account_token_revoke"),
            # JSON API; every other /api/ path answers a JSON 404
            url(r"/api/stories", api_stories.StoriesApiHandler, api_story, name="api_stories"),
            url(r"/api/stories/%s" % ID, api_stories.StoryApiHandler, api_story, name="api_story"),
            url(r"/api/me", api.MeHandler, name="api_me"),
            url(r"/api/openapi.json", api.OpenApiHandler, name="api_openapi"),
            url(r"/api(?:/.*)?", api.ApiNotFoundHandler, name="api_not_found"),
            # feeds
            url(r"/feed\.atom", feed.FeedHandler, story, name="feed"),
            # chat
            url(r"/chat", chat.ChatPageHandler, name="chat"),
            url(r"/chat/ws", chat.ChatSocketHandler, dict(room=m.room), name="chat_ws"),
            # operations
            url(r"/healthz", health.HealthHandler, name="healthz"),
        ]
        settings.update(
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

    def close(self):
        self.models.close()
