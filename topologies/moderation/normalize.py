"""What matching and the models see of a comment: obfuscation undone, nothing else changed.

Posters hide words from filters with zero-width characters, accents and Zalgo marks,
look-alike letters from other scripts (a Cyrillic "es" for the Latin "c"), leetspeak ("sh1t",
"a$$"), spacing ("f u c k", "f.u.c.k") and stretched letters ("fuuuuck"). :func:`skeleton`
undoes each of these, and the same function runs on the training data, on the word
lists and on every comment, so models and rules see one consistent form.

Everything here is pure and total: any ``str`` (lone surrogates from bad JSON included)
gives a ``str``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Final

import numpy as np

# Longest text the models and rules look at: comments are at most 500 characters after
# validation; the CLI may be fed anything, and cost must stay bounded.
MAX_CHARS: Final = 2000

# Latin look-alikes from Cyrillic, Greek and a few symbol blocks (Unicode's confusables,
# the ones seen in chat evasion). Applied only to tokens that also hold a Latin letter,
# so Russian or Greek text stays what it is.
_HOMOGLYPHS: Final = str.maketrans(
    {
        "\u0430": "a", "\u0432": "b", "\u0435": "e", "\u0451": "e", "\u043a": "k",
        "\u043c": "m", "\u043d": "h", "\u043e": "o", "\u0440": "p", "\u0441": "c",
        "\u0442": "t", "\u0443": "y", "\u0445": "x", "\u0455": "s", "\u0456": "i",
        "\u0457": "i", "\u0458": "j", "\u0501": "d", "\u04bb": "h", "\u051b": "q",
        "\u051d": "w", "\u0261": "g", "\u0251": "a", "\u0131": "i", "\u03b1": "a",
        "\u03b2": "b", "\u03b5": "e", "\u03b7": "n", "\u03b9": "i", "\u03ba": "k",
        "\u03bd": "v", "\u03bf": "o", "\u03c1": "p", "\u03c4": "t", "\u03c5": "u",
        "\u03c7": "x", "\u03c9": "w", "\u03f2": "c", "\u0475": "v",
    }
)  # fmt: skip
_LEET: Final = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
     "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "€": "e"}
)  # fmt: skip
_LEET_CHARS: Final = frozenset("01345789@$!|+€")
_EDGE_PUNCT: Final = "\"'()[]{}<>.,;:?!\u00a1\u00bf\u2026\u201c\u201d\u2018\u2019\u00ab\u00bb"
_SPACED: Final = re.compile(r"^\w(?:[.\-_*·•]\w){2,}$")
_STRETCH: Final = re.compile(r"(.)\1{2,}")
_LATIN: Final = re.compile(r"[a-z]")
_ASCII_CONTROLS: Final = {c: " " for c in [*range(32), 127]}


def clean(text: str) -> str:
    """Valid Unicode, bounded length: lone surrogates become U+FFFD, the rest is cut."""
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def visible(text: str) -> str:
    """NFKC text with controls as spaces and invisible characters gone (for language id).

    Format characters (zero-width spaces and joiners, direction marks, tags) carry
    nothing a reader sees; variation selectors and enclosing marks neither.
    """
    text = clean(text)
    if text.isascii():
        return " ".join(text.translate(_ASCII_CONTROLS).split())
    out = []
    for c in unicodedata.normalize("NFKC", text):
        cat = unicodedata.category(c)
        if cat == "Cf" or cat == "Me" or "\ufe00" <= c <= "\ufe0f":
            continue
        out.append(" " if cat in ("Cc", "Zl", "Zp") else c)
    return " ".join("".join(out).split())


def _strip_marks(text: str) -> str:
    if text.isascii():
        return text
    # Accents, Zalgo stacks and other combining marks: "fück", "f̷u̷c̷k̷" → "fuck".
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in decomposed if unicodedata.category(c) not in ("Mn", "Me"))
    return unicodedata.normalize("NFC", kept)


def _token(tok: str) -> str:
    if tok.isalpha() and (tok.isascii() or not _LATIN.search(tok)):
        return tok  # the common case: a plain word of one script
    head = len(tok) - len(tok.lstrip(_EDGE_PUNCT))
    # Trailing "!" or "." is punctuation ("goal!"), a leading "@" or "$" may be a letter
    # ("@ss", "$hit"): strip the edges first, but keep those two.
    while head and tok[head - 1] in "@$":
        head -= 1
    core = tok[head:].rstrip(_EDGE_PUNCT)
    tail = tok[head + len(core) :]
    if not core:
        return tok
    if _LATIN.search(core) or any(c in _LEET_CHARS for c in core):
        mapped = core.translate(_HOMOGLYPHS)
        if _LATIN.search(mapped):
            core = mapped
    if any(c in _LEET_CHARS for c in core) and any(c.isalpha() for c in core):
        core = core.translate(_LEET)
    if _SPACED.match(core):
        core = re.sub(r"[.\-_*·•]", "", core)
    return tok[:head] + core + tail


@functools.lru_cache(maxsize=8192)
def skeleton(text: str) -> str:
    """The de-obfuscated, case-folded form of ``text`` that rules and models match on.

    Cached: the pipeline fingerprints a comment and the moderate stage then matches it,
    and chat repeats itself ("GOAL!").
    """
    text = _strip_marks(visible(text).casefold())
    tokens = [_token(t) for t in text.split()]
    # Runs of three or more single characters are one spaced-out word: "f u c k".
    merged: list[str] = []
    run: list[str] = []
    for tok in [*tokens, ""]:
        if len(tok) == 1 and tok.isalnum():
            run.append(tok)
            continue
        if len(run) >= 3:
            merged.append("".join(run))
        else:
            merged.extend(run)
        run = []
        if tok:
            merged.append(tok)
    # Stretched letters keep two: "goooooal" → "gooal", "asssss" → "ass".
    return _STRETCH.sub(r"\1\1", " ".join(merged))


def squeeze(word: str) -> str:
    """Every run of a repeated character as one: matching "fuuck" against "fuck"."""
    return re.sub(r"(.)\1+", r"\1", word)


WORD: Final = re.compile("[^\\W_]+(?:['\u2019][^\\W_]+)*")


def words(skel: str) -> list[str]:
    """The words of a skeleton, punctuation dropped."""
    return WORD.findall(skel)


def fingerprint(text: str) -> int:
    """A 64-bit SimHash of the comment's byte trigrams, for near-duplicates.

    Two comments that differ by a word or two have fingerprints a few bits apart
    (:func:`distance`); a user's history keeps these instead of texts.
    """
    skel = "".join(words(skeleton(text)))
    if not skel:
        return 0
    data = np.frombuffer(skel.encode(), dtype=np.uint8).astype(np.uint64)
    if len(data) < 3:
        data = np.concatenate([data, np.zeros(3 - len(data), dtype=np.uint64)])
    grams = data[:-2] << np.uint64(16) | data[1:-1] << np.uint64(8) | data[2:]
    # A stable 64-bit hash of each byte trigram (splitmix64's finaliser).
    h = grams * np.uint64(0x9E3779B97F4A7C15)
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    bits = np.unpackbits(h.view(np.uint8)).reshape(len(h), 64)
    majority = np.packbits(bits.sum(axis=0) * 2 > len(h)).view(np.uint64)
    value = int(majority[0])
    # Stored in a signed 64-bit slot (table values are JSON, Avro longs are signed).
    return value - (1 << 64) if value >= 1 << 63 else value


def distance(a: int, b: int) -> int:
    """Differing bits between two fingerprints."""
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()
