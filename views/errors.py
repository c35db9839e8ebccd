"""How every error is worded: typed refusals, raised anywhere, and the one function that picks an
error's message. Pages translate it into the reader's language; the API sends the English."""

import http.client

import tornado.web

ERROR_MESSAGES = {
    400: "The request could not be understood.",
    403: "You are not allowed to do that.",
    404: "There is nothing here.",
    405: "That method is not allowed here.",
    413: "That is too large.",
    429: "Too many attempts. Please wait and try again.",
    500: "Something went wrong on our side. It has been logged.",
    503: "The site is briefly unavailable. Please try again in a moment.",
}


class Refusal(tornado.web.HTTPError):
    """An error with a sentence for the reader. `message` is an English catalogue key, formatted
    with `values` (`plural` and `values["count"]` for a sentence that counts); `fields` maps a form
    or JSON field to its message; `headers` go out with the answer (Retry-After, ...)."""

    def __init__(self, status, message, plural=None, fields=None, headers=None, log=None, **values):
        super().__init__(status, log)
        self.message = message
        self.plural = plural
        self.fields = fields or {}
        self.headers = headers or {}
        self.values = values


class XsrfRefusal(Refusal):
    """The request came from another site, or from a page whose XSRF token is gone or wrong
    (raised by BaseMixin's checks, which run before prepare()). Each kind of handler words it for
    its reader (`xsrf_message`)."""

    def __init__(self, why):
        super().__init__(403, "", log=why)


def worded(handler, key, plural=None, values=None):
    """A catalogue key as the reader sees it: in their language on pages (`translate_errors`), in
    English for the API; formatted with `values` (`values["count"]` picks the plural)."""
    values = values or {}
    if handler.translate_errors:
        translate = handler.locale.translate
        key = translate(key, plural, values["count"]) if plural else translate(key)
    elif plural and values.get("count") != 1:
        key = plural
    return key % values if values else key


def error_message(handler, status_code, exc):
    """The sentence an error answer shows: a refusal's own, the handler's for XSRF and oversized
    bodies, else the status's."""
    if isinstance(exc, XsrfRefusal):
        return worded(handler, handler.xsrf_message)
    if isinstance(exc, Refusal):
        return worded(handler, exc.message, exc.plural, exc.values)
    if status_code == 413:
        return worded(handler, handler.too_large_message)
    if status_code == 400 and not handler.translate_errors and isinstance(exc, tornado.web.HTTPError):
        # Tornado's own 400s (a missing argument, a body it cannot parse), named for API clients;
        # pages keep to the translated sentence of the status.
        if exc.get_message():
            return exc.get_message() + "."
    return worded(handler, ERROR_MESSAGES.get(status_code) or http.client.responses.get(status_code, "Error"))


def field_messages(handler, exc):
    """A refusal's messages per field, worded like its main message."""
    return {field: worded(handler, key, values=exc.values) for field, key in exc.fields.items()}
