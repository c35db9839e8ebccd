"""A story's page, and new / edit / delete for its owner; StoryLookup finds a story for any handler."""

import asyncio

import tornado.web

from models.stories import AlreadyPublished
from views.base import PageHandler
from views.errors import Refusal
from views.forms import MESSAGES, STORY_REFUSED, story_errors, story_refusal, story_values


class StoryLookup:
    """The one way a handler finds a story: a 404 for an unknown id, and with check_owner a 403
    for anyone but its author (pages, uploads and the API alike)."""

    not_yours = "Only the story's author may change it."

    async def find_story(self, story_id, check_owner=False):
        story = await self.application.models.stories.get(int(story_id))
        if story is None:
            raise Refusal(404, "No story has that id.")
        if check_owner and story["user_id"] != self.current_user["id"]:
            raise Refusal(403, self.not_yours)
        return story


class StoryBaseHandler(StoryLookup, PageHandler):
    too_large_message = MESSAGES["form_too_large"]

    def initialize(self, stories):
        self.stories = stories

    async def save(self, story=None):
        """Validate the form, then create the story (or update `story`): returns its id, or None
        once the form is shown again with the values and a message per bad field."""
        title, body = story_values(
            self.get_body_argument("title", ""), self.get_body_argument("body", "", strip=False)
        )
        values, errors = {"title": title, "body": body}, story_errors(title, body)
        if errors:
            return self.render_form("story_form.html", values, errors, story=story)
        user_id = self.current_user["id"]
        try:
            if story is None:
                return await self.stories.create(
                    user_id, title, body, per_hour=self.settings["stories_per_hour"]
                )
            await self.stories.update(story["id"], user_id, title, body)
            return story["id"]
        except AlreadyPublished as e:  # a double submit: show the story the first one made
            self.set_flash(self.locale.translate("This story was already published."))
            self.redirect(self.reverse_url("story", e.story_id))
        except STORY_REFUSED as e:
            refusal = story_refusal(e, self.settings["stories_per_hour"])
            self.error_headers(refusal)
            self.render_form("story_form.html", values, refusal, status=refusal.status_code, story=story)
        return None


class StoryHandler(StoryBaseHandler):
    async def get(self, story_id):
        story = await self.find_story(story_id)
        if story_id != str(story["id"]):  # /story/007 → /story/7
            return self.redirect(self.reverse_url("story", story["id"]), permanent=True)
        models = self.application.models

        async def extras():  # a list, so even a story without either is cached
            return await asyncio.gather(
                models.attachments.for_story(story["id"]), models.previews.cards_for(story["links"])
            )

        attachments, previews = await models.page_cache.get_or_load(("story_extras", story["id"]), extras)
        self.render("story.html", story=story, attachments=attachments, previews=previews)


class StorySlashHandler(PageHandler):
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
        story = await self.find_story(story_id, check_owner=True)
        self.render("story_form.html", story=story, values=story)

    @tornado.web.authenticated
    async def post(self, story_id):
        story = await self.find_story(story_id, check_owner=True)
        if await self.save(story):
            self.set_flash(self.locale.translate("Story saved."))
            self.redirect(self.reverse_url("story", story["id"]))


class StoryDeleteHandler(StoryBaseHandler):
    @tornado.web.authenticated
    async def post(self, story_id):
        story = await self.find_story(story_id, check_owner=True)
        await self.stories.delete(story["id"], self.current_user["id"])
        self.set_flash(self.locale.translate("Story deleted."))
        self.redirect(self.reverse_url("index"))
