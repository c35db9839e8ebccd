"""Search terms for MariaDB's FULLTEXT index, made in Python so the index behaves the same everywhere.

InnoDB's FULLTEXT parser splits on spaces, drops words under `innodb_ft_min_token_size` (3) and
stop words, and cannot split Chinese (no spaces between words). Those are server settings we cannot
count on, so each story gets a `search_text` column of terms we make here:

- text is case-folded (NFKC), and split into runs of letters and digits, plus single symbols
  (emoji); punctuation only separates words, so `%`, `_` or `"` in a query is never a wildcard;
- a run of Chinese/Japanese/Korean characters gives each character and each pair of neighbours
  (bigrams), so "中文" is found inside "学中文的人";
- every term is written as "x" + hex(UTF-8), which InnoDB sees as one plain word of at least 3
  characters that no stop word list contains. Hex keeps prefixes: the term for "stor" is a prefix of
  the one for "story", so the boolean-mode `*` finds words by their beginning.

A search asks for every term of the query (`+term`), the last Latin word also as a prefix.
"""

import re
import unicodedata

TERM_MAX_BYTES = 41  # "x" + 82 hex digits stays under innodb_ft_max_token_size (84)
QUERY_TERMS_MAX = 12
_RUN = re.compile(r"[^\W_]+|[^\w\s]")  # words, and single other characters (kept if symbols)
# Han (incl. extension A and compatibility), kana, Hangul: scripts written without spaces.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")


def _term(word):
    raw = word.encode("utf-8")[:TERM_MAX_BYTES]
    return "x" + raw.decode("utf-8", "ignore").encode("utf-8").hex()  # never half a character


def _words(text):
    """[(word, is_cjk)] in order: CJK runs are kept whole, to be cut into grams by the caller."""
    text = unicodedata.normalize("NFKC", text).casefold()
    found = []
    for run in _RUN.findall(text):
        if len(run) == 1 and not run.isalnum():
            if unicodedata.category(run) == "So":  # emoji and other symbols: searchable one by one
                found.append((run, False))
            continue  # punctuation (% _ ' " + - * ...) only separates words
        pos = 0
        for m in _CJK.finditer(run):
            if m.start() > pos:
                found.append((run[pos : m.start()], False))
            found.append((m.group(), True))
            pos = m.end()
        if pos < len(run):
            found.append((run[pos:], False))
    return found


def _grams(run):
    """Each character and each pair of neighbours."""
    return list(run) + [run[i : i + 2] for i in range(len(run) - 1)]


def document(*texts):
    """The search_text for a story: its distinct terms, space-separated."""
    terms = {}
    for text in texts:
        for word, cjk in _words(text):
            for piece in _grams(word) if cjk else (word,):
                terms.setdefault(_term(piece), None)
    return " ".join(terms)


def query(text):
    """A boolean-mode MATCH expression requiring every term of `text`, or None when it has none."""
    required = []
    words = _words(text)
    for i, (word, cjk) in enumerate(words):
        if cjk:
            # One character: that character; longer: its pairs, which must all be there.
            pieces = [word] if len(word) == 1 else [word[j : j + 2] for j in range(len(word) - 1)]
            required += ["+" + _term(p) for p in pieces]
        else:
            prefix = "*" if i == len(words) - 1 else ""  # the word being typed may be unfinished
            required.append("+" + _term(word) + prefix)
    required = list(dict.fromkeys(required))[:QUERY_TERMS_MAX]
    return " ".join(required) or None
