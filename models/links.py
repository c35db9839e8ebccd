"""Links in a story and the pages they point to: which links may be fetched, the links of rendered
HTML (read once, at save time, off the loop), and a fetched page's title and description."""

import codecs
import hashlib
import html.parser
import ipaddress
import re
import urllib.parse

MAX_LINKS = 5
URL_MAX = 2048
TITLE_MAX, DESCRIPTION_MAX = 300, 1000
# WHATWG's labels that Python spells differently or treats more narrowly.
CHARSET_ALIASES = {
    "gb2312": "gbk",
    "x-gbk": "gbk",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "ascii": "cp1252",
}


def url_hash(url):
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


HOSTNAME_RE = re.compile(r"(?=.{1,253}\Z)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+", re.ASCII)


def fetchable(url):
    """An absolute http/https URL whose host is an IP address or a plain DNS name (anything else,
    e.g. a percent-encoded host, is never handed to the resolver), of a sane length."""
    if len(url) > URL_MAX:
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:  # a bad port or IPv6 literal
        return False
    if parts.scheme not in ("http", "https") or not host or port == 0:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return HOSTNAME_RE.fullmatch(host) is not None and not host.replace(".", "").isdigit()


def normalize_link(url):
    """Markdown percent-encodes the brackets of an IPv6 host ([::1] → %5B::1%5D): undo that."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    netloc = re.sub("%5[bB]", "[", re.sub("%5[dD]", "]", netloc))
    return scheme + sep + netloc + slash + path


class _LinkParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links = []

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href") if tag == "a" else None
        href = href and normalize_link(href)
        if href and fetchable(href) and href not in self.links:
            self.links.append(href)


def extract_links(body_html, limit=MAX_LINKS):
    """The first `limit` distinct http/https links of a rendered story, in order."""
    parser = _LinkParser()
    parser.feed(body_html)
    parser.close()
    return parser.links[:limit]


class _MetaCharsetParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.charset = None

    def handle_starttag(self, tag, attrs):
        if tag != "meta" or self.charset:
            return
        attrs = {k: v or "" for k, v in attrs}
        if attrs.get("charset"):
            self.charset = attrs["charset"].strip()
        elif attrs.get("http-equiv", "").lower() == "content-type":
            self.charset = _charset_param(attrs.get("content", ""))


def _charset_param(content_type):
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'")
    return None


def decode_page(data, content_type):
    """The page as text: the charset of the Content-Type, else of a <meta> in the first 4 KB, else
    UTF-8; undecodable bytes become U+FFFD."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8", "replace")
    charset = _charset_param(content_type)
    if not charset:
        sniffer = _MetaCharsetParser()
        sniffer.feed(data[:4096].decode("latin-1"))
        charset = sniffer.charset
    charset = CHARSET_ALIASES.get((charset or "").lower(), charset or "utf-8")
    try:
        return data.decode(charset, "replace")
    except LookupError:  # unknown, or not a text encoding at all (rot13, zlib)
        return data.decode("utf-8", "replace")


class _PreviewParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.meta = {}
        self.title = None
        self._in_title = False
        self._title_parts = []

    def handle_starttag(self, tag, attrs):
        if tag == "title" and self.title is None:
            self._in_title = True
        elif tag == "meta":
            attrs = {k: v or "" for k, v in attrs}
            key = (attrs.get("property") or attrs.get("name") or "").strip().lower()
            if key in ("og:title", "og:description", "description") and key not in self.meta:
                self.meta[key] = attrs.get("content", "")

    def handle_data(self, data):
        if self._in_title:
            self._title_parts.append(data)

    def handle_endtag(self, tag):
        if tag == "title" and self._in_title:
            self._in_title = False
            self.title = "".join(self._title_parts)


def _one_line(text, limit):
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_page(data, content_type):
    """(title, description) of an HTML page: og:title or <title>, og:description or description.
    CPU work on up to 512 KB: callers run it in an executor."""
    parser = _PreviewParser()
    parser.feed(decode_page(data, content_type))
    parser.close()
    if parser.title is None and parser._in_title:  # cut off inside <title> by the cap
        parser.title = "".join(parser._title_parts)
    title = parser.meta.get("og:title") or parser.title or ""
    description = parser.meta.get("og:description") or parser.meta.get("description") or ""
    return _one_line(title, TITLE_MAX), _one_line(description, DESCRIPTION_MAX)
