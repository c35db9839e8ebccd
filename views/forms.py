"""Validation shared by the pages and the JSON API: each check returns {field: message}, with
messages as English catalogue keys (MESSAGES); `story_refusal` words a model's refusal of a story."""

import math
import re

from models.stories import TooLarge, TooManyStories, TooMuchMarkup
from views.errors import Refusal

USERNAME_RE = re.compile(r"[A-Za-z0-9_]{3,32}")
PASSWORD_MIN, PASSWORD_MAX = 8, 1024
TITLE_MAX = 200
BODY_MAX_BYTES = 100 * 1024  # a MEDIUMTEXT could hold more; stories stop at 100 KB of UTF-8

MESSAGES = {
    "username_empty": "Choose a username.",
    "username_invalid": "Use 3 to 32 letters, digits or underscores.",
    "username_taken": "That username is taken.",
    "password_short": "Use at least 8 characters.",
    "password_long": "Use at most 1024 characters.",
    "confirm_mismatch": "The passwords do not match.",
    "login_username_empty": "Enter your username.",
    "login_password_empty": "Enter your password.",
    "login_failed": "Unknown username or wrong password.",
    "current_wrong": "Your current password is not right.",
    "title_empty": "Give your story a title.",
    "title_long": "Keep the title to 200 characters.",
    "body_empty": "Write your story.",
    "body_long": "Keep the story under 100 KB.",
    "search_long": "Search for at most %d characters.",
    "token_name_empty": "Name the token (e.g. the script that uses it).",
    "token_name_long": "Keep the name to 64 characters.",
    "body_expands": "Formatted, this story grows past 1 MB: use fewer repeated links or images.",
    "body_markup": "This story has too much formatting to show quickly: use at most 5,000 of * _ [ ] < ~.",
    "stories_per_hour": "You have published %(limit)d stories in the last hour."
    " Try again in %(minutes)d min.",
    "form_too_large": "This form is over 1 MB, so it was not sent. Keep the story under 100 KB.",
}


def registration_errors(username, password, confirm):
    errors = {}
    if not username:
        errors["username"] = MESSAGES["username_empty"]
    elif not USERNAME_RE.fullmatch(username):
        errors["username"] = MESSAGES["username_invalid"]
    errors.update(new_password_errors(password, confirm))
    return errors


def new_password_errors(password, confirm):
    if len(password) < PASSWORD_MIN:
        return {"password": MESSAGES["password_short"]}
    if len(password) > PASSWORD_MAX:
        return {"password": MESSAGES["password_long"]}
    if password != confirm:
        return {"confirm": MESSAGES["confirm_mismatch"]}
    return {}


CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f]")  # what get_argument turns into spaces


def story_values(title, body):
    """A story's title and body as saved, from a form or from JSON: control characters become
    spaces (as get_argument does), the title is one line with single spaces, the body keeps its
    own line breaks and indentation."""
    title = " ".join(CONTROL_CHARS.sub(" ", title).split())
    return title, CONTROL_CHARS.sub(" ", body)


def story_errors(title, body):
    errors = {}
    if not title:
        errors["title"] = MESSAGES["title_empty"]
    elif len(title) > TITLE_MAX:
        errors["title"] = MESSAGES["title_long"]
    if not body.strip():
        errors["body"] = MESSAGES["body_empty"]
    elif len(body.encode("utf-8")) > BODY_MAX_BYTES:
        errors["body"] = MESSAGES["body_long"]
    return errors


def token_name_errors(name):
    if not name:
        return {"name": MESSAGES["token_name_empty"]}
    if len(name) > 64:
        return {"name": MESSAGES["token_name_long"]}
    return {}


def story_refusal(exc, per_hour):
    """A refusal of a story write by models/stories.py (TooLarge, TooMuchMarkup, TooManyStories)
    as a Refusal on the `body` field: the pages show it beside the field, the API as its error."""
    if isinstance(exc, TooManyStories):
        key = MESSAGES["stories_per_hour"]
        return Refusal(
            429,
            key,
            fields={"body": key},
            headers={"Retry-After": str(exc.retry_after)},
            limit=per_hour,
            minutes=math.ceil(exc.retry_after / 60),
        )
    key = MESSAGES["body_expands" if isinstance(exc, TooLarge) else "body_markup"]
    return Refusal(400, key, fields={"body": key})


STORY_REFUSED = (TooLarge, TooMuchMarkup, TooManyStories)
