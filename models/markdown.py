"""Story Markdown to HTML: raw HTML is escaped (shown literally); links are http/https/mailto or relative."""

import html
import re
import urllib.parse

import mistune
from mistune.renderers.html import HTMLRenderer

ALLOWED_SCHEMES = ("http", "https", "mailto")
# A URL's scheme as browsers read it (WHATWG URL): a letter, then letters, digits, "+", "-", "."
# up to the first ":". Without one, the URL is relative (story/1, ./x, ../x, ?q=x, #top).
_SCHEME = re.compile(r"([a-z][a-z0-9+.\-]*):")
# Browsers drop tabs and newlines anywhere and strip controls and spaces at the ends; removing
# every control and whitespace character anywhere covers both (and "java script:" too).
_IGNORED = re.compile(r"[\x00-\x20\x7f-\x9f\s]")


READINGS_MAX = 16


def _readings(url):
    """The URL as written and every form that entity and percent decoding make of it (the
    browser decodes the attribute's entities once; decoding more than it does only refuses
    more); None when there are more than READINGS_MAX of them (nested encodings: refused)."""
    seen, todo = [], [url]
    while todo:
        form = todo.pop()
        if form not in seen:
            if len(seen) == READINGS_MAX:
                return None
            seen.append(form)
            todo += [html.unescape(form), urllib.parse.unquote(form)]
    return seen


def is_safe_link(url):
    """An http/https/mailto URL, or a relative one on this site: a path (story/1, ./x, ../x, /x),
    a query (?q=x) or a fragment (#top); never another scheme (javascript:, data:, vbscript:,
    however spelled) and never //host or /\\host, which browsers read as another site."""
    readings = _readings(url)
    if readings is None:
        return False
    for form in readings:
        candidate = _IGNORED.sub("", form).lower()
        scheme = _SCHEME.match(candidate)
        if scheme and scheme.group(1) not in ALLOWED_SCHEMES:
            return False
        if not scheme and candidate[:2].replace("\\", "/") == "//":
            return False
    return True


class StoryRenderer(HTMLRenderer):
    def sanitize_url(self, url):
        return url if is_safe_link(url) else "#"

    def link(self, text, url, title=None):
        html = super().link(text, url, title)
        return html.replace("<a ", '<a rel="nofollow noopener" ', 1)

    def block_code(self, code, info=None):
        # A long line scrolls inside the block: focusable, so the keyboard can scroll it too.
        return super().block_code(code, info).replace("<pre>", '<pre tabindex="0">', 1)


def table(renderer, text):
    """mistune's table inside a focusable figure that scrolls sideways when the table is wide."""
    return '<figure class="table-scroll" tabindex="0"><table>\n' + text + "</table></figure>\n"


def table_cell(renderer, text, align=None, head=False):
    """mistune's cell with a class instead of style="text-align:..." (the CSP allows no inline style)."""
    tag = "th" if head else "td"
    cls = ' class="align-%s"' % align if align in ("left", "center", "right") else ""
    return "  <%s%s>%s</%s>\n" % (tag, cls, text, tag)


class TooLarge(ValueError):
    """The rendered HTML is over HTML_MAX_BYTES (a short body can expand: reference links)."""


HTML_MAX_BYTES = 1024 * 1024

# mistune's time grows with the emphasis, link and HTML delimiters it has to pair up: 100 KB of
# "*_" took 1.0 s, while 100 KB of prose takes about 0.1 s. Measured at 7-14 µs per delimiter, so
# 5,000 of them bound a render to about 70 ms on top of the text (a story with 1,000 links uses
# 2,000 brackets).
MARKUP_MAX = 5000
_MARKUP = re.compile(r"[*_\[\]<~]")


class TooMuchMarkup(ValueError):
    """More delimiters than MARKUP_MAX: the render would take too long, so it is refused."""


def render(body):
    """CPU work (about 100 ms for 100 KB): callers run it in an executor."""
    if len(_MARKUP.findall(body)) > MARKUP_MAX:
        raise TooMuchMarkup()
    md = mistune.create_markdown(
        escape=True, renderer=StoryRenderer(escape=True), plugins=["strikethrough", "table", "url"]
    )
    md.renderer.register("table", table)
    md.renderer.register("table_cell", table_cell)
    html_out = outline(md(body)).replace(" />", ">")  # no XHTML slashes (escaped text has none)
    if len(html_out) > HTML_MAX_BYTES // 4 and len(html_out.encode("utf-8")) > HTML_MAX_BYTES:
        raise TooLarge()
    return html_out


_HEADING = re.compile(r"<(/?)h([1-6])([ >])")


def outline(body_html):
    """Headings ranked under the page's own h1 (the story's title), without gaps: the levels a
    story uses become h2, h3, ... in their order (## and #### alone give h2 and h3). Raw HTML and
    code are escaped, so every "<h" here is the renderer's."""
    levels = sorted({int(m.group(2)) for m in _HEADING.finditer(body_html)})
    rank = {level: min(6, i + 2) for i, level in enumerate(levels)}
    return _HEADING.sub(lambda m: "<%sh%d%s" % (m.group(1), rank[int(m.group(2))], m.group(3)), body_html)


EXCERPT_CHARS = 280
_BLOCK_END = re.compile(r"</(?:p|h[1-6]|li|blockquote|pre|tr|td|th|div|figure)>|<br\s*/?>|<hr\s*/?>")
_TAG = re.compile(r"<[^>]*>")
# The tags that open or close a block; a paragraph at depth 0 is one of the story's own, not one
# inside a list item or a quotation.
_BLOCK_TAG = re.compile(r"<(/?)(p|ul|ol|li|blockquote|pre|table|figure|h[1-6]|div)\b[^>]*>")


def plain_text(body_html):
    """The rendered story as text: tags dropped (blocks end in a space), entities decoded, spaces
    collapsed."""
    return " ".join(html.unescape(_TAG.sub("", _BLOCK_END.sub(" ", body_html))).split())


def first_paragraph(body_html):
    """The text of the story's first top-level paragraph that has any, or None."""
    depth = 0
    for m in _BLOCK_TAG.finditer(body_html):
        closing, tag = m.group(1), m.group(2)
        if tag == "p" and not closing and depth == 0:
            end = body_html.find("</p>", m.end())
            text = plain_text(body_html[m.end() : end if end >= 0 else len(body_html)])
            if text:
                return text
        elif tag != "p":
            depth += -1 if closing else 1
    return None


def shorten(text, limit):
    """text cut to at most `limit` characters and "…", at a space when one is near the end."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit * 0.7:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-—") + "…"


def excerpt(body_html, limit=EXCERPT_CHARS):
    """The story's first paragraph as plain text (not its headings and lists run together), cut
    near `limit`; a story without a paragraph gets its opening text."""
    return shorten(first_paragraph(body_html) or plain_text(body_html), limit)
