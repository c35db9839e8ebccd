"""A story's page, and new / edit / delete for its owner."""

import asyncio
import math

import tornado.web

from models.stories import AlreadyPublished, TooLarge, TooManyStories, TooMuchMarkup
from views.base import BaseHandler
from views.forms import MESSAGES, story_errors, story_values

MAX_ID = 2**32 - 1  # INT UNSIGNED (the routes allow at most 10 digits)


class StoryBaseHandler(BaseHandler):
    too_large_message = MESSAGES["form_too_large"]

    def initialize(self, stories):
        self.stories = stories

    async def get_story(self, story_id, check_owner=False):
        """The story, or a 404; with check_owner, a 403 unless it is the current user's."""
        story = await self.stories.get(int(story_id)) if int(story_id) <= MAX_ID else None
        if story is None:
            raise tornado.web.HTTPError(404)
        if check_owner and story["user_id"] != self.current_user["id"]:
            raise tornado.web.HTTPError(403)
        return story

    async def save(self, story=None):
        """Validate the form, then create the story (or update `story`): returns its id, or None
        once the form is shown again with the values and a message per bad field."""
        title, body = story_values(
            self.get_body_argument("title", ""), self.get_body_argument("body", "", strip=False)
        )
        values, errors = {"title": title, "body": body}, story_errors(title, body)
        if not errors:
            user_id = self.current_user["id"]
            try:
                if story is None:
                    story_id = await self.stories.create(
                        user_id, title, body, per_hour=self.settings["stories_per_hour"]
                    )
                else:
                    await self.stories.update(story["id"], user_id, title, body)
                    story_id = story["id"]
                self.application.previews.schedule(story_id)  # fetched in the background
                return story_id
            except TooLarge:
                errors = {"body": MESSAGES["body_expands"]}
            except TooMuchMarkup:
                errors = {"body": MESSAGES["body_markup"]}
            except AlreadyPublished as e:  # a double submit: show the story the first one made
                self.set_flash(self.locale.translate("This story was already published."))
                self.redirect(self.reverse_url("story", e.story_id))
                return None
            except TooManyStories as e:
                self.set_header("Retry-After", str(e.retry_after))
                message = self.locale.translate(MESSAGES["stories_per_hour"]) % {
                    "limit": self.settings["stories_per_hour"],
                    "minutes": math.ceil(e.retry_after / 60),
                }
                return self.render_form("story_form.html", values, {"body": message}, status=429, story=story)
        self.render_form("story_form.html", values, errors, story=story)
        return None


class StoryHandler(StoryBaseHandler):
    async def get(self, story_id):
        story = await self.get_story(story_id)
        if story_id != str(story["id"]):  # /story/007 → /story/7
            return self.redirect(self.reverse_url("story", story["id"]), permanent=True)
        app = self.application

        async def extras():  # a list, so even a story without either is cached
            return await asyncio.gather(
                app.attachments.for_story(story["id"]), app.previews.cards_for(story["links"])
            )

        attachments, previews = await app.page_cache.get_or_load(("story_extras", story["id"]), extras)
        self.render("story.html", story=story, attachments=attachments, previews=previews)


class StorySlashHandler(BaseHandler):
    """/story/<id>/ → 301 to the canonical /story/<id>."""

    needs_session = False

    def get(self, story_id):
        self.redirect(self.reverse_url("story", story_id), permanent=True)


class StoryNewHandler(StoryBaseHandler):
    @tornado.web.authenticated
    def get(self):
        self.render("story_form.html", story=None, values={"title": "", "body": ""})

    @tornado.web.authenticated
    async def post(self):
        story_id = await self.save()
        if story_id:
            self.set_flash(self.locale.translate("Story published."))
            self.redirect(self.reverse_url("story", story_id))


class StoryEditHandler(StoryBaseHandler):
    @tornado.web.authenticated
    async def get(self, story_id):
        story = await self.get_story(story_id, check_owner=True)
        self.render("story_form.html", story=story, values=story)

    @tornado.web.authenticated
    async def post(self, story_id):
        story = await self.get_story(story_id, check_owner=True)
        if await self.save(story):
            self.set_flash(self.locale.translate("Story saved."))
            self.redirect(self.reverse_url("story", story["id"]))


class StoryDeleteHandler(StoryBaseHandler):
    @tornado.web.authenticated
    async def post(self, story_id):
        story = await self.get_story(story_id, check_owner=True)
        await self.stories.delete(story["id"], self.current_user["id"])
        self.set_flash(self.locale.translate("Story deleted."))
        self.redirect(self.reverse_url("index"))
