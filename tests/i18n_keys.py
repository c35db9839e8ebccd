"""The strings the pages translate, found in the source: `_("...")` in templates and
`translate("...")` / `_("...")` in the handlers, plus the message tables whose English sentences are
catalogue keys (views/forms.MESSAGES, views/base.ERROR_MESSAGES, the status lines of error pages,
the upload messages of models/uploads.py and models/attachments.py). Used by tests/test_locale.py."""

import ast
import glob
import os
import re

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRING = r'"(?:[^"\\\n]|\\.)*"'
CALL = re.compile(r"(?<![\w.])(?:_|[\w.]*translate)\(\s*(%s)(?:\s*,\s*(%s)\s*,)?" % (STRING, STRING))
UPLOAD_ERROR = re.compile(r"UploadError\(\s*\d+,\s*(%s)" % STRING)
# Refusals raised by page handlers, and the sentences a handler class sets for its refusals.
REFUSAL = re.compile(r"Refusal\(\s*\d+,\s*(%s)" % STRING)
HANDLER_SENTENCE = re.compile(r"^\s+(?:not_yours|xsrf_message|too_large_message) = (%s)$" % STRING, re.M)
API_MODULES = ("api.py", "api_stories.py")  # the API answers in English


def source_files():
    files = glob.glob(os.path.join(PROJECT, "template", "**", "*.html"), recursive=True)
    files += glob.glob(os.path.join(PROJECT, "views", "*.py"))
    return sorted(files)


def calls(path):
    """(key, plural key or None) for each translation call with literal strings in one file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for m in CALL.finditer(text):
        yield ast.literal_eval(m.group(1)), ast.literal_eval(m.group(2)) if m.group(2) else None


def used_keys():
    """{"unknown": set, "singular": set, "plural": set}: every key the code can ask for."""
    from views.errors import ERROR_MESSAGES
    from views.forms import MESSAGES
    from views.i18n import STATUS_TITLES

    keys = {"unknown": set(), "singular": set(), "plural": set()}
    for path in source_files():
        for key, plural in calls(path):
            if plural is None:
                keys["unknown"].add(key)
            else:
                keys["singular"].add(key)
                keys["plural"].add(plural)
    keys["unknown"].update(MESSAGES.values())
    keys["unknown"].update(ERROR_MESSAGES.values())
    keys["unknown"].update(STATUS_TITLES.values())
    for path in glob.glob(os.path.join(PROJECT, "views", "*.py")):
        if os.path.basename(path) not in API_MODULES:
            with open(path, encoding="utf-8") as f:
                source = f.read()
            keys["unknown"].update(ast.literal_eval(m.group(1)) for m in REFUSAL.finditer(source))
            keys["unknown"].update(ast.literal_eval(m.group(1)) for m in UPLOAD_ERROR.finditer(source))
            keys["unknown"].update(ast.literal_eval(m.group(1)) for m in HANDLER_SENTENCE.finditer(source))
    for name in ("uploads.py", "attachments.py"):
        with open(os.path.join(PROJECT, "models", name), encoding="utf-8") as f:
            keys["unknown"].update(ast.literal_eval(m.group(1)) for m in UPLOAD_ERROR.finditer(f.read()))
    from models.uploads import TOO_LARGE, TOO_MANY

    keys["unknown"].add(TOO_LARGE)
    keys["singular"].add(TOO_MANY[0])
    keys["plural"].add(TOO_MANY[1])
    keys["unknown"].update(LATER_TRANSLATED, MONTHS, DATE_FORMATS)
    return keys


# Sentences chosen in one place and translated in another (write_error), and the reasons of 400s.
LATER_TRANSLATED = (
    "This form has expired or came from another site. Reload the page and try again.",
    "This page has expired or came from another site. Reload it and try again.",
    "Error",
    "Invalid page.",
    "No such session.",
    "No such token.",
    "Unknown host.",
    "Invalid path.",
    "Unknown language.",
)
# What tornado.locale.Locale.format_date asks the catalogue for (dates on Chinese pages).
MONTHS = "January February March April May June July August September October November December".split()
DATE_FORMATS = ("%(month_name)s %(day)s, %(year)s at %(time)s", "%(month_name)s %(day)s, %(year)s")
