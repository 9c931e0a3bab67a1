"""The HTTP API against the real stack: a real `livecomments api` process, real workers,
real HTTP. Every test makes events of its own."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from support import ApiProcess, bearer, error_code, start_api

from deploy.processes import Worker
from deploy.settings import Settings

POSTS_PER_MINUTE = 5  # the API process's limit in this module: rate limiting is testable


@pytest.fixture(scope="module")
def api(stack: Settings) -> Iterator[ApiProcess]:
    started = start_api(stack, {"LIVECOMMENTS_POSTS_PER_MINUTE": str(POSTS_PER_MINUTE)})
    yield started
    started.stop()


@pytest.fixture(scope="module")
def http(api: ApiProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=35) as client:
        yield client


@pytest.fixture()
def new_event(http: httpx.Client, settings: Settings) -> Callable[..., str]:
    def make(**fields: Any) -> str:
        event_id = f"api-{uuid.uuid4().hex[:10]}"
        r = http.post(
            "/v1/events",
            json={"event_id": event_id, "title": "api test", **fields},
            headers=bearer(settings, "mod-api", "moderator"),
        )
        assert r.status_code == 201, r.text
        return event_id

    return make


def wait_history(
    http: httpx.Client, event_id: str, count: int, within_s: float = 60.0
) -> list[dict[str, Any]]:
    """The event's first comments once Cassandra holds ``count`` of them."""
    deadline = time.monotonic() + within_s
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        r = http.get(f"/v1/events/{event_id}/comments", params={"after": -1, "limit": 500})
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        if len(items) >= count:
            return items
        time.sleep(0.3)
    raise AssertionError(f"{len(items)} of {count} comments in history after {within_s}s")


def test_health_readiness_openapi_and_docs_are_served(http: httpx.Client) -> None:
    assert http.get("/healthz").json()["ok"] is True
    ready = http.get("/readyz").json()
    assert ready["ok"] is True
    assert set(ready["checks"]) >= {"kafka", "cassandra", "redis"}
    spec = http.get("/openapi.json").json()
    assert {
        "/v1/events",
        "/v1/events/{event_id}",
        "/v1/events/{event_id}/comments",
    } <= set(spec["paths"])
    assert http.get("/docs").status_code == 200


def test_a_posted_comment_is_acked_with_an_id_and_reaches_history(
    http: httpx.Client, settings: Settings, new_event: Callable[..., str], pipeline: list[Worker]
) -> None:
    event_id = new_event()
    r = http.post(
        f"/v1/events/{event_id}/comments",
        json={"text": "What a goal!"},
        headers=bearer(settings, "alice"),
    )
    assert r.status_code == 202, r.text
    ack = r.json()
    assert len(ack["comment_id"]) == 26 and ack["duplicate"] is False
    assert ack["comment"]["pending"] is True and ack["comment"]["text"] == "What a goal!"
    [item] = wait_history(http, event_id, 1)
    assert item["comment_id"] == ack["comment_id"]
    assert item["text"] == "What a goal!" and item["user_id"] == "alice"
    assert item["previous_position"] is None and isinstance(item["position"], int)


def test_a_repeated_idempotency_key_gets_the_same_comment_id_and_one_comment(
    http: httpx.Client, settings: Settings, new_event: Callable[..., str], pipeline: list[Worker]
) -> None:
    event_id = new_event()
    auth = bearer(settings, "bob")
    url = f"/v1/events/{event_id}/comments"
    first = http.post(url, json={"text": "once"}, headers={**auth, "Idempotency-Key": "n-1"})
    again = http.post(url, json={"text": "once"}, headers={**auth, "Idempotency-Key": "n-1"})
    body_nonce = http.post(url, json={"text": "once", "nonce": "n-1"}, headers=auth)
    assert first.status_code == again.status_code == body_nonce.status_code == 202
    ids = {first.json()["comment_id"], again.json()["comment_id"], body_nonce.json()["comment_id"]}
    assert len(ids) == 1
    assert again.json()["duplicate"] is True
    http.post(url, json={"text": "marker"}, headers=bearer(settings, "mod-api", "moderator"))
    items = wait_history(http, event_id, 2)
    assert [i["text"] for i in items] == ["once", "marker"]


def test_history_pages_are_whole_cacheable_and_revalidate_with_304(
    http: httpx.Client, settings: Settings, new_event: Callable[..., str], pipeline: list[Worker]
) -> None:
    event_id = new_event()
    mod = bearer(settings, "mod-api", "moderator")  # moderators are not rate limited
    for i in range(7):
        r = http.post(f"/v1/events/{event_id}/comments", json={"text": f"c{i}"}, headers=mod)
        assert r.status_code == 202, r.text
    everything = wait_history(http, event_id, 7)
    assert [i["text"] for i in everything] == [f"c{i}" for i in range(7)]

    # Forward from the start, 3 at a time: two whole pages, then the live edge.
    url: str | None = f"/v1/events/{event_id}/comments?after=-1&limit=3"
    seen: list[dict[str, Any]] = []
    kinds = []
    while url is not None:
        r = http.get(url)
        assert r.status_code == 200, r.text
        page = r.json()
        if not page["items"]:
            break
        seen += page["items"]
        kinds.append((page["whole"], r.headers["cache-control"]))
        url = page["newer"]
    assert seen == everything
    assert kinds == [
        (True, f"public, max-age={settings.api_page_max_age_s}, immutable"),
        (True, f"public, max-age={settings.api_page_max_age_s}, immutable"),
        (False, f"public, max-age={settings.api_live_max_age_s}"),
    ]

    # A whole page: strong ETag, 304 on If-None-Match, the same bytes again.
    first_url = f"/v1/events/{event_id}/comments?after=-1&limit=3"
    r1 = http.get(first_url)
    tag = r1.headers["etag"]
    assert tag.startswith('"')
    assert f"lc:{event_id}" in r1.headers["surrogate-key"].split()
    cached = http.get(first_url, headers={"If-None-Match": tag})
    assert cached.status_code == 304 and cached.headers["etag"] == tag and not cached.content
    assert http.get(first_url).content == r1.content

    # Backward from the live edge: the newest 3, then whole pages before them.
    latest = http.get(f"/v1/events/{event_id}/comments", params={"limit": 3}).json()
    assert latest["items"] == everything[-3:] and latest["whole"] is False
    older = http.get(latest["older"])
    assert older.json()["items"] == everything[1:4] and older.json()["whole"] is True
    assert older.headers["cache-control"].endswith("immutable")
    oldest = http.get(older.json()["older"]).json()
    assert oldest["items"] == everything[:1] and oldest["older"] is None


def test_a_retracted_comment_is_marked_removed_in_history(
    http: httpx.Client, settings: Settings, new_event: Callable[..., str], pipeline: list[Worker]
) -> None:
    event_id = new_event()
    mod = bearer(settings, "mod-api", "moderator")
    for text in ("keep", "spam spam", "keep too"):
        http.post(
            f"/v1/events/{event_id}/comments",
            json={"text": text},
            headers=bearer(settings, "carol"),
        )
    items = wait_history(http, event_id, 3)
    page_url = f"/v1/events/{event_id}/comments?after=-1&limit=3"
    tag = http.get(page_url).headers["etag"]
    target = items[1]
    # The old name still answers (and checks the role) like the new one.
    refused = http.post(
        f"/v1/events/{event_id}/retractions",
        json={"user_id": "carol", "comment_id": target["comment_id"]},
        headers=bearer(settings, "carol"),
    )
    assert refused.status_code == 403 and error_code(refused) == "not_authorized"
    r = http.post(
        f"/v1/events/{event_id}/removals",
        json={
            "user_id": "carol",
            "comment_id": target["comment_id"],
            "position": target["position"],
            "reason": "spam",
        },
        headers=mod,
    )
    assert r.status_code == 202, r.text
    assert r.json()["purge"] == [f"lc:{event_id}:{target['position'] >> 10}"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = http.get(page_url)
        removed = now.json()["items"][1]
        if removed.get("removed"):
            break
        time.sleep(0.3)
    assert removed == {
        "comment_id": target["comment_id"],
        "event_id": event_id,
        "position": target["position"],
        "previous_position": target["previous_position"],
        "epoch": target["epoch"],
        "removed": True,
    }
    assert now.headers["etag"] != tag
    assert [i["text"] for i in now.json()["items"] if not i.get("removed")] == ["keep", "keep too"]


def test_events_are_created_changed_and_read_by_role(
    http: httpx.Client, settings: Settings, new_event: Callable[..., str]
) -> None:
    mod = bearer(settings, "mod-api", "moderator")
    event_id = new_event(slow_mode_s=5, blocked_terms=["spoiler"])
    public = http.get(f"/v1/events/{event_id}").json()
    assert public["status"] == "live" and public["slow_mode_s"] == 5
    assert "blocked_terms" not in public  # moderation settings are for moderators
    full = http.get(f"/v1/events/{event_id}", headers=mod)
    assert full.json()["blocked_terms"] == ["spoiler"]
    again = http.post("/v1/events", json={"event_id": event_id, "title": "x"}, headers=mod)
    assert again.status_code == 409 and error_code(again) == "event_exists"
    viewer = http.patch(
        f"/v1/events/{event_id}", json={"status": "ended"}, headers=bearer(settings, "dan")
    )
    assert viewer.status_code == 403 and error_code(viewer) == "not_authorized"
    stale = http.patch(
        f"/v1/events/{event_id}", json={"title": "x"}, headers={**mod, "If-Match": '"stale"'}
    )
    assert stale.status_code == 412 and error_code(stale) == "precondition_failed"
    changed = http.patch(
        f"/v1/events/{event_id}",
        json={"status": "ended", "title": "Final, over"},
        headers={**mod, "If-Match": full.headers["etag"]},
    )
    assert changed.status_code == 200, changed.text
    assert http.get(f"/v1/events/{event_id}").json()["status"] == "ended"
    late = http.post(
        f"/v1/events/{event_id}/comments",
        json={"text": "too late"},
        headers=bearer(settings, "dan"),
    )
    assert late.status_code == 409 and error_code(late) == "event_not_live"
    listed = {e["event_id"] for e in http.get("/v1/events", params={"limit": 500}).json()["items"]}
    assert event_id not in listed  # ended events leave the list


def test_bad_requests_get_the_protocols_codes(
    http: httpx.Client, settings: Settings, new_event: Callable[..., str]
) -> None:
    event_id = new_event()
    url = f"/v1/events/{event_id}/comments"
    auth = {**bearer(settings, "erin"), "Content-Type": "application/json"}
    cases: list[tuple[httpx.Response, int, str]] = [
        (http.post(url, content=b'{"text": "x"', headers=auth), 400, "bad_json"),
        (http.post(url, content=b"[1, 2]", headers=auth), 400, "bad_json"),
        (http.post(url, json={}, headers=auth), 400, "missing_field"),
        (http.post(url, json={"text": 5}, headers=auth), 400, "invalid_field"),
        (http.post(url, json={"text": "x" * 5000}, headers=auth), 413, "message_too_large"),
        (http.post(url, json={"text": " \u200b "}, headers=auth), 422, "empty_text"),
        (http.post(url, json={"text": "x" * 501}, headers=auth), 422, "text_too_long"),
        (http.post(url, json={"text": "x"}), 401, "not_authenticated"),
        (
            http.post(url, json={"text": "x"}, headers=bearer(settings, "erin", ttl_s=-5)),
            401,
            "token_expired",
        ),
        (
            http.post(url, json={"text": "x"}, headers={"Authorization": "Bearer forged.token.x"}),
            401,
            "bad_token",
        ),
        (
            http.post("/v1/events/no-such-event-xyz/comments", json={"text": "x"}, headers=auth),
            404,
            "event_not_found",
        ),
        (http.get("/v1/events/no-such-event-xyz/comments"), 404, "event_not_found"),
        (http.get(url, params={"before": 5, "after": 3}), 400, "invalid_field"),
        (http.get(url, params={"limit": "many"}), 400, "invalid_field"),
        (http.get("/v1/nothing-here"), 404, "not_found"),
        (http.delete(f"/v1/events/{event_id}"), 405, "method_not_allowed"),
    ]
    for response, status, code in cases:
        assert (response.status_code, error_code(response)) == (status, code), (
            response.request.method,
            response.request.url,
            response.text,
        )
    expired = cases[8][0]
    assert "invalid_token" in expired.headers["www-authenticate"]


def test_the_post_rate_limit_answers_429_with_retry_after(
    http: httpx.Client, settings: Settings, new_event: Callable[..., str]
) -> None:
    event_id = new_event()
    auth = bearer(settings, f"fast-{uuid.uuid4().hex[:6]}")
    statuses = []
    for i in range(POSTS_PER_MINUTE + 1):
        r = http.post(f"/v1/events/{event_id}/comments", json={"text": f"p{i}"}, headers=auth)
        statuses.append(r.status_code)
    assert statuses == [202] * POSTS_PER_MINUTE + [429]
    assert error_code(r) == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json()["error"]["retry_after_ms"] > 0


def test_history_of_an_event_closed_to_anonymous_viewers_needs_a_token(
    http: httpx.Client, settings: Settings, new_event: Callable[..., str]
) -> None:
    event_id = new_event(anonymous_read=False)
    anonymous = http.get(f"/v1/events/{event_id}/comments")
    assert anonymous.status_code == 401 and error_code(anonymous) == "not_authenticated"
    signed = http.get(f"/v1/events/{event_id}/comments", headers=bearer(settings, "frank"))
    assert signed.status_code == 200
    assert signed.headers["cache-control"].startswith("private")


def test_metrics_count_requests_by_route_template(http: httpx.Client) -> None:
    http.get("/v1/events/some-event-that-is-not-there")
    text = http.get("/metrics").text
    assert 'route="/v1/events/{event_id}"' in text
    assert "some-event-that-is-not-there" not in text
    assert "api_request_seconds_bucket" in text


def test_web_apps_on_other_origins_may_call_the_api(http: httpx.Client) -> None:
    preflight = http.options(
        "/v1/events/any-event/comments",
        headers={
            "Origin": "https://viewer-app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "idempotency-key" in preflight.headers["access-control-allow-headers"].lower()
    r = http.get("/v1/events", headers={"Origin": "https://viewer-app.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    assert "etag" in r.headers["access-control-expose-headers"].lower()
