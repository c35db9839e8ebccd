"""Checks on raw input shared by the pages, the API and the server: one definition of each."""

MAX_ID = 2**32 - 1  # INT UNSIGNED: every id column


def whole_number(raw, low=0, high=None):
    """The int that `raw` spells in ASCII digits (at most 18 of them), within [low, high]; else
    None. Not int(): that takes "+1", " 1", "1_000" and "²" is a digit to str.isdigit()."""
    if not (isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 18):
        return None
    value = int(raw)
    if value < low or (high is not None and value > high):
        return None
    return value


def valid_id(value):
    """An id that can exist in an id column (the routes allow up to 10 digits)."""
    return 1 <= value <= MAX_ID
