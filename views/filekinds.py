"""What kind of file an attachment is, in words ("Text file", "Image"), from its content type.

The labels are catalogue keys: templates translate them, and the upload script gets the same
table (`table(locale)`) so the files it adds read like the ones the server lists."""


def _(message):  # marks a catalogue key (tests/i18n_keys.py finds these); translated when shown
    return message


# (content type or its beginning, label): the first that matches wins.
KINDS = (
    ("image/", _("Image")),
    ("audio/", _("Audio")),
    ("video/", _("Video")),
    ("text/html", _("Web page")),
    ("text/csv", _("Spreadsheet")),
    ("text/", _("Text file")),
    ("application/pdf", _("PDF document")),
    ("application/json", _("JSON file")),
    ("application/zip", _("Archive")),
    ("application/gzip", _("Archive")),
    ("application/x-gzip", _("Archive")),
    ("application/x-tar", _("Archive")),
    ("application/x-7z", _("Archive")),
    ("application/x-rar", _("Archive")),
    ("application/x-bzip", _("Archive")),
    ("application/x-xz", _("Archive")),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml", _("Document")),
    ("application/vnd.oasis.opendocument.text", _("Document")),
    ("application/msword", _("Document")),
    ("application/rtf", _("Document")),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml", _("Spreadsheet")),
    ("application/vnd.oasis.opendocument.spreadsheet", _("Spreadsheet")),
    ("application/vnd.ms-excel", _("Spreadsheet")),
    ("application/vnd.openxmlformats-officedocument.presentationml", _("Presentation")),
    ("application/vnd.oasis.opendocument.presentation", _("Presentation")),
    ("application/vnd.ms-powerpoint", _("Presentation")),
    ("application/epub", _("E-book")),
)
OTHER = _("File")


def kind(content_type):
    """The English label (a catalogue key) for a content type such as 'text/plain; charset=utf-8'."""
    content_type = (content_type or "").lower()
    for prefix, label in KINDS:
        if content_type.startswith(prefix):
            return label
    return OTHER


def table(locale):
    """[[prefix, label], ...] translated, and the label for anything else: for the upload script."""
    return {"kinds": [[p, locale.translate(label)] for p, label in KINDS], "other": locale.translate(OTHER)}
