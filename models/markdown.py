"""Story Markdown to HTML: raw HTML is escaped (shown literally) and links are http/https/mailto only."""

import html
import re
import urllib.parse

import mistune
from mistune.renderers.html import HTMLRenderer

ALLOWED_SCHEMES = ("http:", "https:", "mailto:")


class StoryRenderer(HTMLRenderer):
    def sanitize_url(self, url):
        candidate = urllib.parse.unquote(url).strip().lower()
        if candidate.startswith(ALLOWED_SCHEMES):
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


def render(body):
    """CPU work (about 100 ms for 100 KB): callers run it in an executor."""
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
