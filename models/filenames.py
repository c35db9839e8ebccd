"""An attachment's name, type and size as people and browsers see them: the client's filename made
safe metadata, the type read from the bytes (never the client's word), which types may show inline,
Content-Disposition, sizes in words."""

import re
import unicodedata
import urllib.parse

import puremagic

MAX_FILENAME = 200  # characters (code points), not bytes
SNIFF_BYTES = 8192  # what the content-type sniffer looks at
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL"} | {p + str(i) for p in ("COM", "LPT") for i in range(1, 10)}
_KEEP_FORMAT = {"\u200c", "\u200d"}  # ZWNJ/ZWJ join emoji and scripts; other format chars go (bidi tricks)
# Types a browser may show inline; everything else (HTML, SVG, XML, JavaScript, PDF, ...) downloads.
INLINE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp"}


def clean_filename(raw):
    """The client's filename as safe metadata: no path parts, no control or format characters,
    no NUL, at most MAX_FILENAME characters (the extension kept), never empty."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    kept = []
    for c in name:
        category = unicodedata.category(c)
        if category in ("Zl", "Zp") or c in "\t\n\r":
            kept.append(" ")
        elif category[0] != "C" or c in _KEEP_FORMAT:
            kept.append(c)
    name = " ".join("".join(kept).split()).strip(" .")
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = _cut(stem, MAX_FILENAME - len(ext) - 1) + "." + ext
        else:
            name = _cut(name, MAX_FILENAME)
    if name.split(".", 1)[0].upper() in _WINDOWS_DEVICES:
        name = "_" + name
    return name or "file"


def _cut(text, length):
    """text cut to length code points, without leaving a dangling joiner or combining mark."""
    text = text[:length]
    while text and (text[-1] in _KEEP_FORMAT or unicodedata.category(text[-1]) in ("Mn", "Me", "Sk")):
        text = text[:-1]
    return text.rstrip(" .")


def sniff_type(head):
    """The content type told by the bytes themselves; text/plain for other UTF-8 text, else
    application/octet-stream. What the client claimed is never used."""
    if head:
        try:
            mime = puremagic.from_string(bytes(head), mime=True)
        except (puremagic.PureError, ValueError):
            mime = ""
        if mime and re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", mime.lower()):
            return mime.lower()
    try:
        text = bytes(head).decode("utf-8")
    except UnicodeDecodeError as e:
        # A multi-byte character cut by the end of the sniffed bytes is still text.
        if e.start < len(head) - 3 or len(head) < SNIFF_BYTES:
            return "application/octet-stream"
        text = bytes(head[: e.start]).decode("utf-8")
    if "\x00" in text:
        return "application/octet-stream"
    return "text/plain; charset=utf-8"


def is_inline(content_type):
    return content_type in INLINE_TYPES


def content_disposition(filename, inline=False):
    """RFC 6266: an ASCII fallback in filename=, the real name UTF-8 encoded in filename*=."""
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\;%' else "_" for c in filename)
    value = '%s; filename="%s"' % ("inline" if inline else "attachment", fallback)
    if fallback != filename:
        value += "; filename*=UTF-8''" + urllib.parse.quote(filename, safe="")
    return value


def human_size(size):
    """1 536 → '1.5 KB' (binary multiples, as file managers show them)."""
    if size < 1024:
        return "%d byte%s" % (size, "" if size == 1 else "s")
    for unit in ("KB", "MB", "GB", "TB"):
        size /= 1024.0
        if size < 1024 or unit == "TB":
            return ("%.1f %s" if size < 10 else "%.0f %s") % (size, unit)
