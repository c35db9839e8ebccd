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


def _ranges(codepoints):
    """Sorted code points as [(first, last)] runs."""
    runs = []
    for c in sorted(codepoints):
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return [tuple(r) for r in runs]


def _char_class(codepoints, negate=False):
    # Literal characters (none of them is special inside a class), so Python's re and an ECMA
    # engine read the schema's pattern the same way: no \s, whose meaning differs between them.
    body = "".join(chr(a) if a == b else chr(a) + "-" + chr(b) for a, b in _ranges(codepoints))
    return "[" + ("^" if negate else "") + body + "]"


# Code points HTML forbids in a document: controls other than ASCII whitespace (C0 but tab, LF,
# FF, CR; DEL; C1) and the noncharacters (U+FDD0-U+FDEF, U+xFFFE and U+xFFFF in all 17 planes). A
# page showing one fails validation, so a title or body never keeps one: each becomes a space,
# from a form and from the API alike (get_argument already does this for most C0 controls).
FORBIDDEN = (
    set(range(0x00, 0x09))
    | {0x0B}
    | set(range(0x0E, 0x20))
    | set(range(0x7F, 0xA0))
    | set(range(0xFDD0, 0xFDF0))
    | {plane << 16 | low for plane in range(17) for low in (0xFFFE, 0xFFFF)}
)
FORBIDDEN_RE = re.compile(_char_class(FORBIDDEN))

# "Blank", defined once: a title or body made only of these is empty. Whitespace as Python's
# str.isspace() has it (what split() and strip() remove: U+0085 and U+3000 included), the
# invisible format characters (zero-width space and joiners, word joiner, U+FEFF), and the
# forbidden code points above. The OpenAPI schema's pattern for both fields is VISIBLE itself.
# (Every whitespace code point is in the BMP: scanning it takes 6 ms at import, all 17 planes 80.)
BLANK = {c for c in range(0x10000) if chr(c).isspace()} | {0x180E, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF}
BLANK |= FORBIDDEN
VISIBLE = _char_class(BLANK, negate=True)  # one character that is not blank
VISIBLE_RE = re.compile(VISIBLE)


def is_blank(text):
    return VISIBLE_RE.search(text) is None


def story_values(title, body):
    """A story's title and body as saved, from a form or from JSON: every code point HTML forbids
    becomes a space (FORBIDDEN), the title is one line with single spaces, the body keeps its own
    line breaks and indentation. A title longer than TITLE_MAX as sent stays as sent, so that
    story_errors refuses it: the limit counts what was sent, as the form's maxlength and the
    schema's maxLength do."""
    title = FORBIDDEN_RE.sub(" ", title)
    if len(title) <= TITLE_MAX:
        title = " ".join(title.split())
    return title, FORBIDDEN_RE.sub(" ", body)


def story_errors(title, body):
    errors = {}
    if is_blank(title):
        errors["title"] = MESSAGES["title_empty"]
    elif len(title) > TITLE_MAX:
        errors["title"] = MESSAGES["title_long"]
    if is_blank(body):
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
