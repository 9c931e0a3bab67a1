"""The web page end to end: headless Chromium (Debian's package, driven by Playwright)
against a real API, a real gateway and real workers on the real stack."""

from __future__ import annotations

import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import ApiProcess, bearer, start_api

from deploy.processes import GatewayChild, Worker, start_gateway, wait_healthy
from deploy.settings import Settings

WEB_GATEWAY = 7
CHROMIUM = Path("/usr/bin/chromium")


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced PNG — what
    Chromium's screenshots are. Enough to look at the pixels without an image library."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and color in (2, 6), (depth, color, interlace)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        row_filter = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = prev[i]
            up_left = prev[i - channels] if i >= channels else 0
            if row_filter == 1:
                line[i] = (line[i] + left) & 255
            elif row_filter == 2:
                line[i] = (line[i] + up) & 255
            elif row_filter == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif row_filter == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def ink(png: bytes) -> tuple[float, int]:
    """Share of pixels that differ from the most common colour, and how many colours."""
    width, _, rows = decode_png(png)
    channels = len(rows[0]) // width
    counts: dict[bytes, int] = {}
    for row in rows[::2]:
        for x in range(0, width * channels, channels * 2):
            px = row[x : x + 3]
            counts[px] = counts.get(px, 0) + 1
    total = sum(counts.values())
    return 1 - max(counts.values()) / total, len(counts)


@pytest.fixture(scope="module")
def gateway(stack: Settings) -> Iterator[GatewayChild]:
    # Index 7: a port of its own (gateway_port + 7), apart from other modules' gateways.
    g = start_gateway(stack, WEB_GATEWAY, {"LIVECOMMENTS_GATEWAY_PRESENCE_INTERVAL_S": "1"})
    try:
        wait_healthy(stack, [g], timeout_s=90)
        yield g
    finally:
        g.stop()


@pytest.fixture(scope="module")
def web_api(stack: Settings, gateway: GatewayChild) -> Iterator[ApiProcess]:
    api = start_api(
        stack,
        {
            "LIVECOMMENTS_API_DEV_TOKENS": "1",
            "LIVECOMMENTS_API_GATEWAY_URL": f"ws://127.0.0.1:{gateway.port}/",
        },
    )
    yield api
    api.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is missing: apt-get install -y chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def sign_in(page: Any, user: str, *, moderator: bool = False) -> None:
    page.fill("#user", user)
    if moderator:
        page.check("#as-moderator")
    page.click("#signin button[type=submit]")
    page.wait_for_selector(f"#who:has-text('Signed in as {user}')", timeout=20_000)
    page.wait_for_selector("#connection[data-state=live]", timeout=30_000)


def new_event(http: httpx.Client, settings: Settings, title: str) -> str:
    event_id = f"web-{uuid.uuid4().hex[:10]}"
    r = http.post(
        "/v1/events",
        json={"event_id": event_id, "title": title},
        headers=bearer(settings, "mod-web", "moderator"),
    )
    assert r.status_code == 201, r.text
    return event_id


def test_the_page_shows_live_comments_presence_and_removals(
    web_api: ApiProcess,
    gateway: GatewayChild,
    browser: Any,
    settings: Settings,
    pipeline: list[Worker],
) -> None:
    http = httpx.Client(base_url=web_api.url, timeout=35)
    event_id = new_event(http, settings, "Web page test")
    assert http.get("/v1/dev/token", params={"user": "x"}).status_code == 200

    viewer = browser.new_page(viewport={"width": 1100, "height": 800})
    console: list[str] = []
    viewer.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    viewer.goto(f"{web_api.url}/?event={event_id}")
    viewer.wait_for_selector("#connection[data-state=live]", timeout=30_000)
    assert "Web page test" in viewer.inner_text("#event-title")

    # Post from the page (over the WebSocket): pending at once, then published.
    sign_in(viewer, "alice")
    viewer.fill("#text", "Hello from the browser")
    viewer.press("#text", "Enter")
    mine = "#comments li:has-text('Hello from the browser')"
    viewer.wait_for_selector(mine, timeout=10_000)
    viewer.wait_for_selector(f"{mine}[data-state=published]", timeout=60_000)

    # A comment posted elsewhere (HTTP) arrives live.
    r = http.post(
        f"/v1/events/{event_id}/comments",
        json={"text": "Spam from bob"},
        headers=bearer(settings, "bob"),
    )
    assert r.status_code == 202, r.text
    bobs = f"#comments li[data-comment-id='{r.json()['comment_id']}']"
    viewer.wait_for_selector(f"{bobs}[data-state=published]", timeout=60_000)

    # A moderator's page removes bob's comment (a `moderate` remove over the WebSocket);
    # it disappears from the viewer's page.
    moderator = browser.new_page()
    moderator.goto(f"{web_api.url}/?event={event_id}")
    sign_in(moderator, "mod-web", moderator=True)
    moderator.wait_for_selector(f"{bobs} button.remove", timeout=30_000)
    assert viewer.is_hidden("#mod") and moderator.is_visible("#mod")
    assert viewer.locator("#comments button").count() == 0  # viewers get no moderator buttons

    # Presence: both pages are counted (pushed at most every interval).
    viewer.wait_for_function(
        "Number(document.getElementById('viewers').textContent) >= 2", timeout=30_000
    )

    # Top mode is a view the viewer asks for; the event is quiet, so nothing is hidden.
    viewer.check("#top")
    viewer.wait_for_timeout(500)
    assert viewer.inner_text("#notice") == ""
    assert viewer.is_hidden("#hot")

    moderator.click(f"{bobs} button.remove")
    viewer.wait_for_selector(bobs, state="detached", timeout=30_000)
    moderator.wait_for_selector(bobs, state="detached", timeout=30_000)
    assert viewer.is_visible(mine)

    shot = viewer.screenshot(full_page=True)
    (settings.state_path / "logs" / "web-page.png").write_bytes(shot)
    share, colours = ink(shot)
    assert share > 0.02 and colours > 8, f"the page looks blank ({share:.3f}, {colours} colours)"
    blank = browser.new_page(viewport={"width": 1100, "height": 800})
    blank.set_content("<html><body></body></html>")
    blank_share, _ = ink(blank.screenshot())
    assert blank_share < 0.001  # the check tells a blank page from a page with content
    assert not [c for c in console if c.startswith("error")], console
    http.close()


def test_a_moderator_approves_a_held_comment_and_acts_on_authors_from_the_keyboard(
    web_api: ApiProcess,
    gateway: GatewayChild,
    browser: Any,
    settings: Settings,
    pipeline: list[Worker],
) -> None:
    http = httpx.Client(base_url=web_api.url, timeout=35)
    event_id = new_event(http, settings, "Web moderation test")
    console: list[str] = []

    viewer = browser.new_page(viewport={"width": 1100, "height": 800})
    viewer.on("console", lambda m: console.append(f"viewer {m.type}: {m.text}"))
    viewer.goto(f"{web_api.url}/?event={event_id}")
    carol = f"carol-{uuid.uuid4().hex[:6]}"  # profiles outlive a run: a fresh user each time
    sign_in(viewer, carol)
    moderator = browser.new_page(viewport={"width": 1400, "height": 900})
    moderator.on("console", lambda m: console.append(f"moderator {m.type}: {m.text}"))
    moderator.goto(f"{web_api.url}/?event={event_id}")
    sign_in(moderator, "mod-web", moderator=True)
    moderator.wait_for_selector("#mod:not([hidden])", timeout=10_000)

    def shout() -> tuple[str, str]:
        """Posts a line in capitals from carol's page: the caps_flood rule holds it for
        review (spam 0.65). The unique tail is letters only: a code with digits
        ("7BE67815") looks like spam to the model, which blocks it. Returns the pending
        comment's selector and its comment_id, once the moderator's held list shows it
        (polled every few seconds, nobody pressing anything)."""
        tail = "".join("ABCDEFGHIJKLMNOP"[int(c, 16)] for c in uuid.uuid4().hex[:8])
        text = f"WHAT A GREAT GOAL TODAY {tail}"
        viewer.fill("#text", text)
        viewer.press("#text", "Enter")
        mine = f"#comments li:has-text('{text}')"
        viewer.wait_for_selector(f"{mine}[data-state=pending]", timeout=10_000)
        comment_id = viewer.get_attribute(mine, "data-comment-id")
        try:
            moderator.wait_for_selector(f"#held li[data-comment-id='{comment_id}']", timeout=90_000)
        except Exception as e:
            status = moderator.inner_text("#mod-status")
            raise AssertionError(f"{text!r} not in the held list: {status!r}; {console}") from e
        return mine, str(comment_id)

    carols, comment_id = shout()
    held = f"#held li[data-comment-id='{comment_id}']"
    assert "caps_flood" in moderator.inner_text(held)
    logs = settings.state_path / "logs"
    (logs / "web-held.png").write_bytes(moderator.screenshot(full_page=True))
    assert moderator.locator(f"#comments li[data-comment-id='{comment_id}']").count() == 0
    assert viewer.get_attribute(carols, "data-state") == "pending"  # held: never published

    # Approve it from the keyboard; it enters the event for everyone, carol's pending
    # comment becomes the published one (same comment_id).
    moderator.focus(f"{held} button.approve")
    moderator.keyboard.press("Enter")
    moderator.wait_for_selector(held, state="detached", timeout=30_000)
    # The list is empty now: focus went to its refresh button, not to the top of the page.
    assert moderator.evaluate("document.activeElement.id") == "held-refresh"
    viewer.wait_for_selector(
        f"#comments li[data-comment-id='{comment_id}'][data-state=published]", timeout=60_000
    )
    moderator.wait_for_selector(f"#comments li[data-comment-id='{comment_id}']", timeout=60_000)
    assert "Approved" in moderator.inner_text("#mod-status")

    # A rejected one leaves the list and is never published.
    rejected, rejected_id = shout()
    moderator.click(f"#held li[data-comment-id='{rejected_id}'] button.reject")
    moderator.wait_for_selector(
        f"#held li[data-comment-id='{rejected_id}']", state="detached", timeout=60_000
    )
    assert "Rejected" in moderator.inner_text("#mod-status")
    moderator.wait_for_timeout(3_000)
    assert moderator.locator(f"#comments li[data-comment-id='{rejected_id}']").count() == 0
    assert viewer.get_attribute(rejected, "data-state") == "pending"

    # Time carol out for a minute through the author menu, keyboard only.
    moderator.focus(f"#comments li[data-comment-id='{comment_id}'] button.author-menu")
    moderator.keyboard.press("Enter")
    moderator.wait_for_selector("#user-menu:not([hidden])", timeout=5_000)
    moderator.keyboard.press("ArrowDown")  # the first item is 10 s; the second, 1 min
    assert "1 min" in moderator.evaluate("document.activeElement.textContent")
    (logs / "web-user-menu.png").write_bytes(moderator.screenshot(full_page=True))
    moderator.keyboard.press("Enter")
    moderator.wait_for_selector("#user-menu", state="hidden", timeout=5_000)
    moderator.wait_for_selector("#mod-status:has-text('cannot post for')", timeout=30_000)
    assert "author-menu" in moderator.evaluate("document.activeElement.className")
    r = http.get(f"/v1/users/{carol}/moderation", headers=bearer(settings, "mod-web", "moderator"))
    assert r.status_code == 200, r.text
    assert (r.json()["timeout_until"] or 0) > time.time() * 1000 + 30_000, r.json()
    # The gateway learns of the timeout from the profiles log: a post may get through first.
    deadline = time.monotonic() + 60
    while "timed you out" not in viewer.inner_text("#notice"):
        assert time.monotonic() < deadline, viewer.inner_text("#notice")
        viewer.fill("#text", f"am I muted? {uuid.uuid4().hex[:6]}")
        viewer.press("#text", "Enter")
        viewer.wait_for_timeout(2_000)
    moderator.click("#mod-status button.undo")  # lift it again
    moderator.wait_for_selector("#mod-status:has-text('may post again')", timeout=30_000)

    # Slow mode and strictness, live.
    moderator.fill("#slow-mode", "5")
    moderator.select_option("#strictness", "strict")
    moderator.click("#apply-settings")
    moderator.wait_for_selector("#mod-status:has-text('Applied')", timeout=30_000)
    e = http.get(f"/v1/events/{event_id}", headers=bearer(settings, "mod-web", "moderator")).json()
    assert (e["slow_mode_s"], e["strictness"]) == (5, "strict"), e

    # Ban her with the mouse: her comments leave every page of the event (hers included).
    moderator.click(f"#comments li[data-comment-id='{comment_id}'] button.author-menu")
    moderator.click("#user-menu [data-action=ban]")
    moderator.wait_for_selector("#mod-status:has-text('is banned')", timeout=30_000)
    viewer.wait_for_selector(
        f"#comments li[data-comment-id='{comment_id}']", state="detached", timeout=60_000
    )
    moderator.wait_for_selector(
        f"#comments li[data-comment-id='{comment_id}']", state="detached", timeout=60_000
    )
    moderator.click("#mod-status button.undo")
    moderator.wait_for_selector("#mod-status:has-text('no longer banned')", timeout=30_000)

    shot = moderator.screenshot(full_page=True)
    (logs / "web-moderator.png").write_bytes(shot)
    share, colours = ink(shot)
    assert share > 0.02 and colours > 8, f"the page looks blank ({share:.3f}, {colours} colours)"
    assert not [c for c in console if " error: " in c], console
    http.close()


def test_dev_tokens_are_off_unless_enabled(stack: Settings) -> None:
    from support import start_api as start

    api = start(stack)
    try:
        r = httpx.get(f"{api.url}/v1/dev/token", params={"user": "x"}, timeout=10)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        page = httpx.get(f"{api.url}/", timeout=10)
        assert page.status_code == 200 and "livecomments" in page.text
    finally:
        api.stop()
