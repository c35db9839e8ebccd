"""The OpenAPI 3.1 document of the JSON API, served at /api/openapi.json (built once, in code, so it
reads the same limits as the handlers; tests run schemathesis against the live app with it)."""

import functools

from views.forms import BODY_MAX_BYTES, TITLE_MAX, VISIBLE
from views.index import SEARCH_MAX

# A title or body must keep a character that is not blank: views/forms.py defines "blank" once and
# its VISIBLE class is both this pattern and the server's check.


def _ref(name):
    return {"$ref": "#/components/schemas/%s" % name}


def _json(schema, description):
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description):
    return _json(_ref("Error"), description)


WRITE_SECURITY = [{"bearerAuth": []}, {"sessionCookie": [], "xsrfHeader": []}]
READ_SECURITY = [{}, {"bearerAuth": []}, {"sessionCookie": []}]
RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait", "schema": {"type": "string", "pattern": "^[0-9]+$"}}
}


def _write_errors():
    return {
        "400": _error("malformed JSON, a wrong type, an unknown field, or a field that fails validation"),
        "401": _error("no session and no token, or a bad or revoked token"),
        "403": _error("missing or wrong XSRF token (session cookie), or not the story's author"),
        "413": _error("body too large"),
        "415": _error("the body is not application/json"),
        "429": {**_error("too many stories this hour"), "headers": RETRY_AFTER},
        "503": _error("the database is briefly unavailable"),
        "default": _error("any other error, always this shape"),
    }


STORY_ID = {
    "name": "story_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 4294967295},
}


@functools.cache
def document():
    text_field = {"type": "string", "pattern": VISIBLE}
    saved_as = (
        "; must hold a character that is not blank (whitespace, zero-width or forbidden); the code"
        " points HTML forbids (controls but tab, LF, FF, CR; DEL; C1; noncharacters) are saved as spaces"
    )
    title = {
        **text_field,
        "minLength": 1,
        "maxLength": TITLE_MAX,
        "description": "one line (runs of whitespace become one space)" + saved_as,
    }
    body = {
        **text_field,
        "minLength": 1,
        "maxLength": BODY_MAX_BYTES,  # characters; 100 KB of UTF-8 is the real limit (a 400 past it)
        "description": "Markdown, at most 100 KB of UTF-8" + saved_as,
    }
    schemas = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["status", "message"],
                    "additionalProperties": False,
                    "properties": {
                        "status": {"type": "integer", "minimum": 400, "maximum": 599},
                        "message": {"type": "string", "minLength": 1},
                        "fields": {
                            "type": "object",
                            "description": "field name → the message the form shows",
                            "additionalProperties": {"type": "string"},
                        },
                    },
                }
            },
        },
        "StorySummary": {
            "type": "object",
            "required": ["id", "title", "excerpt", "author", "created_at", "url"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "title": {"type": "string"},
                "excerpt": {"type": "string", "description": "the opening as plain text"},
                "author": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"},
                "url": {"type": "string", "format": "uri", "description": "the story's page"},
            },
        },
        "Preview": {
            "type": "object",
            "required": ["url", "title", "description"],
            "additionalProperties": False,
            "properties": {
                "url": {"type": "string", "format": "uri"},
                "title": {"type": "string"},
                "description": {"type": "string"},
            },
        },
        "Attachment": {
            "type": "object",
            "required": ["id", "filename", "content_type", "size", "created_at", "url"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "filename": {"type": "string", "description": "the uploader's name for it"},
                "content_type": {"type": "string"},
                "size": {"type": "integer", "minimum": 0, "description": "bytes"},
                "created_at": {"type": "string", "format": "date-time"},
                "url": {"type": "string", "format": "uri", "description": "the download"},
            },
        },
        "Story": {
            "type": "object",
            "required": [
                "id",
                "title",
                "body",
                "body_html",
                "author",
                "created_at",
                "updated_at",
                "url",
                "previews",
                "attachments",
            ],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "title": {"type": "string"},
                "body": {"type": "string", "description": "Markdown as written"},
                "body_html": {"type": "string", "description": "rendered, raw HTML escaped"},
                "author": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
                "url": {"type": "string", "format": "uri"},
                "previews": {
                    "type": "array",
                    "maxItems": 5,
                    "description": "link preview cards fetched so far",
                    "items": _ref("Preview"),
                },
                "attachments": {"type": "array", "items": _ref("Attachment")},
            },
        },
        "StoryList": {
            "type": "object",
            "required": ["items", "page", "next"],
            "additionalProperties": False,
            "properties": {
                "items": {"type": "array", "maxItems": 20, "items": _ref("StorySummary")},
                "page": {"type": "integer", "minimum": 1},
                "next": {"type": ["string", "null"], "format": "uri", "description": "the next page"},
            },
        },
        "NewStory": {
            "type": "object",
            "required": ["title", "body"],
            "additionalProperties": False,
            "properties": {"title": title, "body": body},
        },
        "StoryChanges": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {"title": title, "body": body},
        },
        "Me": {
            "type": "object",
            "required": ["id", "username", "auth"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "username": {"type": "string"},
                "auth": {"type": "string", "enum": ["session", "token"]},
            },
        },
    }
    story_json = {"application/json": {"schema": _ref("Story")}}
    paths = {
        "/api/stories": {
            "get": {
                "operationId": "listStories",
                "summary": "Newest stories, 20 a page; q searches titles and bodies literally",
                "security": READ_SECURITY,
                "parameters": [
                    {
                        "name": "page",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 1},
                    },
                    {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": SEARCH_MAX}},
                ],
                "responses": {
                    "200": _json(_ref("StoryList"), "a page of stories"),
                    "400": _error("a bad page number or a search over the length limit"),
                    "401": _error("a bad or revoked token"),
                    "default": _error("any other error"),
                },
            },
            "post": {
                "operationId": "createStory",
                "summary": "Publish a story",
                "security": WRITE_SECURITY,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("NewStory")}},
                },
                "responses": {
                    "200": {
                        "description": "the same story was sent moments ago (a retry): that story",
                        "headers": {
                            "Location": {"description": "the story's API URL", "schema": {"type": "string"}}
                        },
                        "content": story_json,
                    },
                    "201": {
                        "description": "created",
                        "headers": {
                            "Location": {"description": "the story's API URL", "schema": {"type": "string"}}
                        },
                        "content": story_json,
                    },
                    **_write_errors(),
                },
            },
        },
        "/api/stories/{story_id}": {
            "parameters": [STORY_ID],
            "get": {
                "operationId": "getStory",
                "summary": "One story with its author, link previews and attachments",
                "security": READ_SECURITY,
                "responses": {
                    "200": {"description": "the story", "content": story_json},
                    "401": _error("a bad or revoked token"),
                    "404": _error("no story has that id"),
                    "default": _error("any other error"),
                },
            },
            "patch": {
                "operationId": "updateStory",
                "summary": "Change the title, the body or both (the author only)",
                "security": WRITE_SECURITY,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("StoryChanges")}},
                },
                "responses": {
                    "200": {"description": "the story as saved", "content": story_json},
                    "404": _error("no story has that id"),
                    **_write_errors(),
                },
            },
            "delete": {
                "operationId": "deleteStory",
                "summary": "Delete a story (the author only)",
                "security": WRITE_SECURITY,
                "responses": {
                    "204": {"description": "deleted"},
                    "401": _error("not logged in"),
                    "403": _error("missing XSRF token, or not the author"),
                    "404": _error("no story has that id"),
                    "default": _error("any other error"),
                },
            },
        },
        "/api/me": {
            "get": {
                "operationId": "me",
                "summary": "Who the request is authenticated as",
                "security": [{"bearerAuth": []}, {"sessionCookie": []}],
                "responses": {
                    "200": _json(_ref("Me"), "the member"),
                    "401": _error("anonymous, or a bad or revoked token"),
                    "default": _error("any other error"),
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [{}],
                "responses": {"200": _json({"type": "object"}, "the OpenAPI document")},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Storyhouse API",
            "version": "1.0.0",
            "description": (
                "Stories as JSON. Reads are public. Writes need a personal API token "
                "(Authorization: Bearer <token>, created on /account) or the session cookie plus "
                "the X-XSRFToken header carrying the _xsrf cookie's value. Every error is "
                '{"error": {"status": N, "message": "..."}}.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "a personal API token"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "session"},
                "xsrfHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-XSRFToken",
                    "description": "the _xsrf cookie's value; needed with the session cookie for writes",
                },
            },
        },
    }
