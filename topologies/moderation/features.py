"""Spam signals a bag of words does not see: links, promotion, shouting, emoji, repetition.

:func:`spam_text` appends one marker token per signal to the comment's skeleton
(``__link__``, ``__promo__`` …). The spam model is trained on the same markers, so it
learns how much each signal weighs next to the words, and the ONNX graph stays one text
input: no second feature tensor to keep in step between training and serving.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

URL: Final = re.compile(
    r"(?:https?://|www\.)([^\s/?#]+)|\b((?:[a-z0-9-]+\.)+(?:com|net|org|io|gg|tv|ly|co|me|"
    r"xyz|info|biz|ru|cn|app|dev|link|click|shop|live|site|online|top|uk)\b)",
    re.IGNORECASE,
)
# Promotion as chat spam words it. Not "free", "win" or "won": "free kick!", "we won!".
PROMO: Final = re.compile(
    r"\b(?:prize|claim|cash|offer|discount|promo|coupon|cheap|buy now|subscribe|"
    r"follow me|followers|giveaway|crypto|bitcoin|earn|income|click|check out my|dm me|"
    r"txt|call now|urgent|guaranteed|limited time)\b",
    re.IGNORECASE,
)
_MONEY: Final = re.compile(r"[$€£¥]|\b\d+\s?(?:usd|eur|gbp|p)\b", re.IGNORECASE)
_LONG_NUMBER: Final = re.compile(r"\d{5,}")
_STRETCH: Final = re.compile(r"(.)\1{4,}")


def is_emoji(c: str) -> bool:
    return 0x1F000 <= ord(c) <= 0x1FAFF or unicodedata.category(c) == "So"


def markers(text: str) -> list[str]:
    """The spam signals of a raw comment, as marker tokens."""
    out: list[str] = []
    if URL.search(text):
        out.append("__link__")
    promo = len(PROMO.findall(text))
    out += ["__promo__"] * min(promo, 3)
    if _MONEY.search(text):
        out.append("__money__")
    if _LONG_NUMBER.search(text):
        out.append("__number__")
    letters = sum(map(str.isalpha, text))
    if letters >= 6 and sum(map(str.isupper, text)) > 0.6 * letters:
        out.append("__caps__")
    if text and not text.isascii():
        emoji = sum(map(is_emoji, text))
        if emoji >= 3 and emoji > 0.3 * len(text.replace(" ", "")):
            out.append("__emoji__")
    if _STRETCH.search(text):
        out.append("__stretch__")
    tokens = text.casefold().split()
    if len(tokens) >= 4 and len(set(tokens)) <= len(tokens) / 2:
        out.append("__repeat__")
    return out


def spam_text(raw: str, skel: str) -> str:
    """The spam model's input: the skeleton followed by the raw text's markers."""
    found = markers(raw)
    return f"{skel} {' '.join(found)}" if found else skel
