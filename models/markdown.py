"""Story Markdown to HTML: raw HTML is escaped (shown literally) and links are http/https/mailto only."""

import html
import re
import urllib.parse

import mistune
from mistune.renderers.html import HTMLRenderer

ALLOWED_SCHEMES = ("http:", "https:", "mailto:")


def is_same_site(url):
    """A path on this site (/story/1) or a fragment (#top); never //host or /\\host, which
    browsers read as another site."""
    if url.startswith("#"):
        return True
    return url.startswith("/") and not url.startswith(("//", "/\\"))


class StoryRenderer(HTMLRenderer):
    def sanitize_url(self, url):
        # Browsers drop tabs and newlines inside URLs ("/\t/host" is "//host"): check without them.
        candidate = re.sub(r"[\t\n\r]", "", urllib.parse.unquote(url)).strip().lower()
        if candidate.startswith(ALLOWED_SCHEMES) or is_same_site(candidate):
            return url
        return "#"

    def link(self, text, url, title=None):
        html = super().link(text, url, title)
        return html.replace("<a ", '<a rel="nofollow noopener" ', 1)


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
    md.renderer.register("table_cell", table_cell)
    html_out = md(body)
    if len(html_out) > HTML_MAX_BYTES // 4 and len(html_out.encode("utf-8")) > HTML_MAX_BYTES:
        raise TooLarge()
    return html_out


EXCERPT_CHARS = 280
_BLOCK_END = re.compile(r"</(?:p|h[1-6]|li|blockquote|pre|tr|td|th|div)>|<br\s*/?>|<hr\s*/?>")
_TAG = re.compile(r"<[^>]*>")


def excerpt(body_html, limit=EXCERPT_CHARS):
    """The story's opening as plain text (tags dropped, entities decoded, spaces collapsed)."""
    spaced = _BLOCK_END.sub(" ", body_html)  # blocks end in a space, inline tags just vanish
    text = " ".join(html.unescape(_TAG.sub("", spaced)).split())
    return text if len(text) <= limit else text[:limit] + "…"
