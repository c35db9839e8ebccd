"""/api/stories (list, search, create) and /api/stories/<id> (read, change, delete): the pages'
rules and messages, as JSON."""

import tornado.httputil

from models.db import iso
from models.stories import AlreadyPublished
from views.api import ApiHandler
from views.errors import Refusal
from views.forms import MESSAGES, STORY_REFUSED, story_errors, story_refusal, story_values
from views.index import SEARCH_MAX
from views.stories import StoryLookup
from views.uploads import attachment_json


class StoryApiMixin(StoryLookup):
    def initialize(self, stories, previews, attachments):
        self.stories = stories
        self.previews = previews
        self.attachments = attachments

    def summary(self, row):
        return {
            "id": row["id"],
            "title": row["title"],
            "excerpt": row["excerpt"],
            "author": row["author"],
            "created_at": iso(row["created_at"]),
            "url": self.absolute(self.reverse_url("story", row["id"])),
        }

    async def detail(self, row):
        return {
            "id": row["id"],
            "title": row["title"],
            "body": row["body"],
            "body_html": row["body_html"],
            "author": row["author"],
            "created_at": iso(row["created_at"]),
            "updated_at": iso(row["updated_at"]),
            "url": self.absolute(self.reverse_url("story", row["id"])),
            "previews": await self.previews.cards_for(row["links"]),
            "attachments": [attachment_json(self, a) for a in await self.attachments.for_story(row["id"])],
        }

    def validated(self, title, body):
        title, body = story_values(title, body)
        errors = story_errors(title, body)
        if errors:
            raise Refusal(400, " ".join(errors.values()), fields=errors)
        return title, body

    async def saved(self, write):
        """Run a create/update with the model's own limits, as the form does, with its messages."""
        try:
            return await write()
        except STORY_REFUSED as e:
            raise story_refusal(e, self.settings["stories_per_hour"]) from None


class StoriesApiHandler(StoryApiMixin, ApiHandler):
    async def get(self):
        page = self.page_argument()
        query = self.get_query_argument("q", "")
        if len(query) > SEARCH_MAX:
            raise Refusal(
                400, MESSAGES["search_long"] % SEARCH_MAX, fields={"q": MESSAGES["search_long"] % SEARCH_MAX}
            )
        rows, has_next = await self.stories.page(page, query)
        following = None
        if has_next:
            args = {"page": page + 1, **({"q": query} if query else {})}
            following = self.absolute(tornado.httputil.url_concat(self.reverse_url("api_stories"), args))
        self.write({"items": [self.summary(r) for r in rows], "page": page, "next": following})

    async def post(self):
        user = self.member()
        data = self.json_body(("title", "body"))
        title, body = self.validated(data.get("title", ""), data.get("body", ""))
        per_hour = self.settings["stories_per_hour"]
        try:
            story_id = await self.saved(
                lambda: self.stories.create(user["id"], title, body, per_hour=per_hour)
            )
        except AlreadyPublished as e:  # the same story moments ago (a retried request): that one
            self.set_header("Location", self.reverse_url("api_story", e.story_id))
            return self.write(await self.detail(await self.find_story(e.story_id)))
        self.set_status(201)
        self.wrote()
        self.set_header("Location", self.reverse_url("api_story", story_id))
        self.write(await self.detail(await self.find_story(story_id)))


class StoryApiHandler(StoryApiMixin, ApiHandler):
    async def get(self, story_id):
        self.write(await self.detail(await self.find_story(story_id)))

    async def patch(self, story_id):
        self.member()
        data = self.json_body(("title", "body"))
        if not data:
            raise Refusal(400, "Send title, body or both.")
        story = await self.find_story(story_id, check_owner=True)
        title, body = self.validated(data.get("title", story["title"]), data.get("body", story["body"]))
        await self.saved(lambda: self.stories.update(story["id"], story["user_id"], title, body))
        self.wrote()
        self.write(await self.detail(await self.find_story(story_id)))

    async def delete(self, story_id):
        self.member()
        story = await self.find_story(story_id, check_owner=True)
        await self.stories.delete(story["id"], story["user_id"])
        self.wrote()
        self.set_status(204)
