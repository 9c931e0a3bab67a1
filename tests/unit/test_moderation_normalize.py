"""normalize: the de-obfuscated form rules and models see, and message fingerprints."""

from __future__ import annotations

import pytest

from topologies.moderation.normalize import MAX_CHARS, clean, distance, fingerprint, skeleton


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("F U C K you", "fuck you"),
        ("f.u.c.k off", "fuck off"),
        ("f-u-c-k", "fuck"),
        ("fuuuuuuck", "fuuck"),
        ("sh1t!", "shit!"),
        ("a$$hole", "asshole"),
        ("@ss", "ass"),
        ("b!tch", "bitch"),
        ("\u0441unt", "cunt"),  # Cyrillic es among Latin letters
        ("f\u200bu\u200bc\u200bk", "fuck"),  # zero-width spaces
        ("f\u00fcck", "fuck"),
        ("f\u0336u\u0336c\u0336k\u0336", "fuck"),  # combining long stroke overlay
        ("\uff33\uff30\uff2f\uff29\uff2c\uff25\uff32", "spoiler"),  # full-width
        ("GOOOOOOAL!!!", "gooal!!"),
    ],
)
def test_obfuscation_is_undone(text: str, expected: str) -> None:
    assert skeleton(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "scunthorpe united",
        "assassin's creed",
        "cocktail hour",
        "what a goal!",
        "2-1 at half time",
        "i love this",
        "\u0447\u0443\u0434\u0435\u0441\u043d\u0430\u044f \u0438\u0433\u0440\u0430",  # Russian
        "\u8fd9\u7403\u592a\u6f02\u4eae\u4e86",
    ],
)
def test_ordinary_text_only_gets_case_folded(text: str) -> None:
    assert skeleton(text) == text


def test_clean_bounds_length_and_repairs_lone_surrogates() -> None:
    assert len(clean("x" * 100_000)) == MAX_CHARS
    assert clean("a\ud800b") == "a?b"
    assert skeleton("\u200b\u200c\ufeff") == ""


def test_fingerprints_of_near_duplicates_are_close_and_of_others_far() -> None:
    a = fingerprint("check out my channel for daily highlights")
    assert distance(a, fingerprint("Check out my channel for daily highlights!!!")) == 0
    assert distance(a, fingerprint("check out my channel for daily highlights now")) <= 12
    assert distance(a, fingerprint("the referee needs glasses tonight")) > 20
    assert fingerprint("") == 0
    assert -(2**63) <= a < 2**63  # fits a signed 64-bit slot
