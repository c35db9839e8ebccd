"""Reading time of a story: words at 220 a minute, Chinese/Japanese/Korean characters at 400."""

import re

WORDS_PER_MINUTE = 220
CJK_PER_MINUTE = 400
# Han (incl. extension A and compatibility), kana, Hangul: read character by character.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def minutes(text):
    """Whole minutes to read `text` (plain text), at least 1."""
    cjk = len(_CJK.findall(text))
    words = len(_CJK.sub(" ", text).split())
    return max(1, round(words / WORDS_PER_MINUTE + cjk / CJK_PER_MINUTE))
