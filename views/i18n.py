"""The pages in Chinese and English (tornado.locale): the CSV catalogues in locale/, which language a
reader gets, the switcher (POST /lang), dates in the reader's language.

The reader's language, in order: the member's saved choice (users.locale), the `lang` cookie, the
browser's Accept-Language, then en_US. Handlers translate with `self.locale.translate(...)`,
templates with `_(...)`; the switcher is views/lang.py. The English strings are the catalogue
keys: the JSON API uses the same messages (views/forms.py MESSAGES, views/base.py ERROR_MESSAGES)
untranslated.
"""

import http.client
import os
import urllib.parse

import tornado.locale
from tornado.escape import xhtml_escape

from models.filenames import human_size

LOCALE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "locale")
DEFAULT = "en_US"
# Each language named in itself, in the order the switcher offers them.
LOCALES = {"en_US": "English", "zh_CN": "中文"}
HTML_LANG = {"en_US": "en", "zh_CN": "zh-CN"}
LANG_COOKIE = "lang"

# The error pages' titles, fixed here (Python 3.13 renamed some of http.client's) as catalogue keys.
STATUS_TITLES = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    507: "Insufficient Storage",
}

_loaded = False


def load():
    """Read locale/*.csv once per process (Application.__init__ calls it; later calls are free)."""
    global _loaded
    if not _loaded:
        tornado.locale.load_translations(LOCALE_DIR)
        tornado.locale.set_default_locale(DEFAULT)
        _loaded = True


def closest(code):
    """A supported locale code for a language tag ('zh-Hans-CN', 'zh_TW', 'en-GB'), or None.
    Every Chinese tag gets the simplified Chinese pages: they are the only Chinese we have."""
    primary = (code or "").strip().replace("_", "-").split("-")[0].lower()
    return {"zh": "zh_CN", "en": "en_US"}.get(primary)


def status_title(status_code, default="Error"):
    return STATUS_TITLES.get(status_code) or http.client.responses.get(status_code, default)


def chosen(handler):
    """The language this browser chose with the switcher (its cookie), or None."""
    code = handler.get_cookie(LANG_COOKIE)
    return code if code in LOCALES else None


def user_locale(handler):
    """The saved choice of a member, else the visitor's cookie; None lets Tornado ask the browser.
    On an error page rendered before prepare() (an XSRF refusal), current_user is still None."""
    user = handler.current_user
    if user and user.get("locale") in LOCALES:
        return tornado.locale.get(user["locale"])
    code = chosen(handler)
    return tornado.locale.get(code) if code else None


def browser_locale(handler, default=DEFAULT):
    """Accept-Language, best q first, each tag matched on its language ('zh' alone is Chinese,
    which Tornado's own matching misses)."""
    handler.add_header("Vary", "Accept-Language")
    tags = []
    for i, item in enumerate(handler.request.headers.get("Accept-Language", "").split(",")[:20]):
        tag, _sep, params = item.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if q > 0:
            tags.append((-q, i, tag))
    for _q, _i, tag in sorted(tags):
        code = closest(tag)
        if code:
            return tornado.locale.get(code)
    return tornado.locale.get(default)


def date_text(locale, value, time=True):
    """A UTC datetime for a page: '03 Dec 2026, 09:24' in English (the site's own format),
    '2026年12月3日 上午9:24' in Chinese (Tornado's format_date with our catalogue's month names)."""
    if locale.code == "en_US":
        return value.strftime("%d %b %Y, %H:%M" if time else "%d %b %Y")
    return locale.format_date(value, gmt_offset=0, relative=False, full_format=True, shorter=not time)


def time_html(locale, value):
    """A UTC datetime as <time datetime="...Z">: the text is the UTC time, labelled as such, for
    readers without JavaScript; static/js/site.js shows it in the reader's own zone (relative
    when recent)."""
    return '<time datetime="%sZ">%s UTC</time>' % (
        value.isoformat(timespec="seconds"),
        xhtml_escape(date_text(locale, value)),
    )


def size_text(locale, size):
    """models.filenames.human_size, with the bytes of a tiny file in the reader's language."""
    if size < 1024:
        return locale.translate("{n} byte", "{n} bytes", size).replace("{n}", str(size))
    return human_size(size)


def adopt(handler, code):
    """At log in: the member's saved language becomes this browser's (its cookie) and this
    response's (the flash message)."""
    if code in LOCALES:
        handler.locale = tornado.locale.get(code)
        handler.set_cookie(LANG_COOKIE, code, expires_days=365, samesite="Lax")


def markup(message, **parts):
    """A translated sentence with HTML put into its placeholders: the sentence is escaped, the
    parts are not (make them with link() or escape them yourself)."""
    return xhtml_escape(message) % parts


def link(href, text):
    return '<a href="%s">%s</a>' % (xhtml_escape(href), xhtml_escape(text))


def back_url(request):
    """Where the switcher returns: this page, or for a page that answered a POST (a form with
    errors), the page the form was on (its Referer on this host); GET must work there."""
    if request.method in ("GET", "HEAD"):
        return request.uri
    parts = urllib.parse.urlsplit(request.headers.get("Referer", ""))
    if parts.netloc == request.host and parts.path:
        return parts.path + ("?" + parts.query if parts.query else "")
    return "/"


def namespace(handler):
    """What the templates get besides Tornado's own `_` and `locale`."""
    locale = handler.locale
    return dict(
        html_lang=HTML_LANG.get(locale.code, "en"),
        languages=LOCALES,
        html_lang_of=HTML_LANG.get,
        back_url=back_url(handler.request),
        date_text=lambda value, time=True: date_text(locale, value, time),
        time_html=lambda value: time_html(locale, value),
        size_text=lambda size: size_text(locale, size),
        markup=markup,
        link=link,
    )
