"""GET /chat (the page) and WS /chat/ws (one member's tab in the room, models/room.py)."""

import json

import tornado.web

from models.db import DatabaseUnavailable
from views.base import PageHandler
from views.sockets import SocketHandler

MAX_BODY = 2000  # characters in one message


def parse_frame(message):
    """The body of a client frame `{"body": "..."}`, or (None, why it is refused)."""
    if isinstance(message, bytes):
        return None, "Send text frames."
    try:
        data = json.loads(message)
    except (ValueError, RecursionError):  # RecursionError: [[[[… a thousand levels deep
        return None, "Frames must be JSON."
    if not isinstance(data, dict) or set(data) != {"body"} or not isinstance(data["body"], str):
        return None, 'Send {"body": "your message"}.'
    body = data["body"].strip()
    if not body:
        return None, "The message is empty."
    if len(body) > MAX_BODY:
        return None, "A message is at most %d characters." % MAX_BODY
    try:
        body.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escaped in the JSON
        return None, "The message is not valid text."
    return body, None


class ChatPageHandler(PageHandler):
    @tornado.web.authenticated
    def get(self):
        self.render("chat.html")


class ChatSocketHandler(SocketHandler):
    """One member's tab in the room. The session is checked before the upgrade: none → 403."""

    unavailable = "The chat is briefly unavailable."
    login_needed = "Log in to chat."

    def initialize(self, room):
        super().initialize()
        self.room = room

    async def opened(self):
        try:
            await self.room.join(self)
        except DatabaseUnavailable:
            self.send({"type": "error", "message": "The chat is briefly unavailable."})
            self.close(1011, "database unavailable")

    async def on_message(self, message):
        if not self.take_token():
            return self.send_error_frame("Too many messages: at most 5 a second. Wait a moment.")
        body, problem = parse_frame(message)
        if problem:
            return self.send_error_frame(problem)
        try:
            event = await self.room.messages.add(self.user["id"], self.user["username"], body)
        except DatabaseUnavailable:
            return self.send_error_frame("The message could not be saved. Please try again.")
        self.room.publish(event)

    def closed(self):
        self.room.leave(self)
