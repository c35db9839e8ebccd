"""GET /feed.atom: the newest 20 stories as an Atom feed (built with ElementTree, so every value is
escaped). Tornado's ETag (a hash of the body) answers If-None-Match with 304."""

import datetime
import re
import xml.etree.ElementTree as ET

import tornado.web

from models.db import iso
from views.base import PageHandler

ATOM = "http://www.w3.org/2005/Atom"
EPOCH = datetime.datetime(1970, 1, 1)
NOT_XML = re.compile(
    "[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)  # XML 1.0 has no place for these


def text(value):
    return NOT_XML.sub("", value)


class FeedHandler(PageHandler):
    needs_session = False  # the same feed for everyone
    # The same bytes for everyone (no XSRF token in it): Tornado's body-hash ETag is worth it here.
    compute_etag = tornado.web.RequestHandler.compute_etag

    def initialize(self, stories):
        self.stories = stories

    def absolute(self, path):
        return "%s://%s%s" % (self.request.protocol, self.request.host, path)

    def sub(self, parent, tag, value=None, **attrs):
        element = ET.SubElement(parent, tag, attrs)
        if value is not None:
            element.text = text(value)
        return element

    async def get(self):
        rows, _ = await self.stories.page(1)
        feed = ET.Element("feed", xmlns=ATOM)
        self.sub(feed, "title", "Storyhouse")
        self.sub(feed, "subtitle", "The newest stories")
        self.sub(feed, "id", self.absolute(self.reverse_url("feed")))  # stable per site
        self.sub(feed, "updated", iso(max((r["created_at"] for r in rows), default=EPOCH)))
        self.sub(
            feed,
            "link",
            rel="self",
            type="application/atom+xml",
            href=self.absolute(self.reverse_url("feed")),
        )
        self.sub(
            feed, "link", rel="alternate", type="text/html", href=self.absolute(self.reverse_url("index"))
        )
        for row in rows:
            url = self.absolute(self.reverse_url("story", row["id"]))
            entry = self.sub(feed, "entry")
            self.sub(entry, "title", row["title"], type="text")
            self.sub(entry, "id", url)
            self.sub(entry, "link", rel="alternate", type="text/html", href=url)
            self.sub(entry, "published", iso(row["created_at"]))
            self.sub(entry, "updated", iso(row["created_at"]))
            self.sub(self.sub(entry, "author"), "name", row["author"])
            self.sub(entry, "summary", row["excerpt"], type="text")
        self.set_header("Content-Type", "application/atom+xml; charset=UTF-8")
        self.set_header("Cache-Control", "public, max-age=60")
        self.finish(ET.tostring(feed, encoding="utf-8", xml_declaration=True))
