// The livecomments web page: a viewer of one event over the WebSocket protocol
// livecomments.v1 (docs/protocol.md). REST is used only for what the protocol does not
// carry: the list of events, a development token, and a moderator's removal.
"use strict";

const SUBPROTOCOL = "livecomments.v1";
const KEEP = 500; // comments kept on the page; older ones leave the DOM

const $ = (id) => document.getElementById(id);
const state = {
  config: null,
  token: null,
  identity: null,
  eventId: null,
  ws: null,
  last: {}, // event_id -> {epoch, position}: where a resume starts
  attempt: 0,
  requestId: 0,
};

function nextId(prefix) {
  state.requestId += 1;
  return `${prefix}${state.requestId}`;
}

function setConnection(text, kind) {
  const el = $("connection");
  el.textContent = text;
  el.dataset.state = kind;
}

function notice(text) {
  $("notice").textContent = text || "";
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (options.body) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { ...options, headers });
  const body = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) {
    const err = (body && body.error) || { code: "http_" + r.status, message: r.statusText };
    throw Object.assign(new Error(err.message), { code: err.code });
  }
  return body;
}

// -- rendering ---------------------------------------------------------------------------

function timeOf(ms) {
  return ms ? new Date(ms).toLocaleTimeString([], { hour12: false }) : "";
}

function isModerator() {
  const roles = (state.identity && state.identity.roles) || [];
  return roles.some((r) => r === "moderator" || r === "broadcaster" || r === "admin");
}

function commentItem(c, pending) {
  const li = document.createElement("li");
  li.dataset.commentId = c.comment_id;
  li.dataset.userId = c.user_id;
  li.dataset.state = pending ? "pending" : "published";
  if (c.position != null) li.dataset.position = String(c.position);
  const time = document.createElement("time");
  time.className = "time";
  const at = c.published_at || c.submitted_at;
  if (at) time.dateTime = new Date(at).toISOString();
  time.textContent = timeOf(at);
  const author = document.createElement("span");
  author.className = "author";
  const roles = c.roles || [];
  if (roles.includes("moderator") || roles.includes("broadcaster") || roles.includes("admin")) {
    author.classList.add("moderator");
  }
  author.textContent = c.display_name || c.user_id;
  li.append(time, author);
  for (const b of c.badges || []) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = b;
    li.append(badge);
  }
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = c.text; // never innerHTML: comments are untrusted
  const mark = document.createElement("span");
  mark.className = "state";
  li.append(text, mark);
  if (!pending && isModerator()) {
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove the comment of ${author.textContent}`);
    remove.addEventListener("click", () => removeComment(c));
    li.append(" ", remove);
  }
  return li;
}

function findComment(commentId) {
  return document.querySelector(`#comments li[data-comment-id="${CSS.escape(commentId)}"]`);
}

function showComment(c, pending) {
  const list = $("comments");
  const existing = findComment(c.comment_id);
  if (c.removed) {
    if (existing) existing.remove();
    return;
  }
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const li = commentItem(c, pending);
  if (existing) existing.replaceWith(li); // our pending comment, now published
  else list.append(li);
  while (list.children.length > KEEP) list.firstElementChild.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function retract(item) {
  if (item.scope === "USER_COMMENTS") {
    const sel = `#comments li[data-user-id="${CSS.escape(item.user_id)}"]`;
    document.querySelectorAll(sel).forEach((li) => li.remove());
  } else if (item.comment_id) {
    const li = findComment(item.comment_id);
    if (li) li.remove();
  }
}

// -- the connection ----------------------------------------------------------------------

function send(frame) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(frame));
}

function join(eventId) {
  const frame = { type: "join", event_id: eventId, mode: mode(), id: nextId("j") };
  const since = state.last[eventId];
  if (since && since.position != null) frame.since = since;
  send(frame);
}

function mode() {
  return $("top").checked ? "top" : "all";
}

function showHot(hot) {
  $("hot").hidden = !hot;
}

function remember(eventId, epoch, position) {
  if (position != null) state.last[eventId] = { epoch, position };
}

function onFrame(f) {
  switch (f.type) {
    case "welcome":
      state.identity = f;
      state.attempt = 0;
      renderIdentity();
      if (state.eventId) join(state.eventId);
      break;
    case "joined":
      remember(f.event_id, f.epoch, f.position);
      showHot(f.hot);
      if (f.truncated) join(f.event_id); // a long absence: page on
      else setConnection("live", "live");
      break;
    case "comments":
      if (f.event_id !== state.eventId) break;
      for (const c of f.items) {
        showComment(c, false);
        remember(c.event_id, c.epoch, c.position);
      }
      break;
    case "mode":
      showHot(f.hot);
      break;
    case "retracted":
      if (f.event_id === state.eventId) f.items.forEach(retract);
      break;
    case "pending":
      if (f.event_id === state.eventId && !findComment(f.comment.comment_id)) {
        showComment(f.comment, true);
      }
      break;
    case "presence":
      if (f.event_id === state.eventId) $("viewers").textContent = String(f.viewers);
      break;
    case "gap":
      remember(f.event_id, f.epoch, f.position);
      join(f.event_id); // fill the hole: resume from the last comment we have
      break;
    case "reconnect":
      setTimeout(() => state.ws && state.ws.close(1000, "reconnect"), f.after_ms);
      break;
    case "token_expiring":
      refreshToken();
      break;
    case "error":
      if (f.code === "rate_limited" && f.retry_after_ms) {
        notice(`Slow down: try again in ${Math.ceil(f.retry_after_ms / 1000)} s.`);
      } else {
        notice(`${f.message} (${f.code})`);
      }
      break;
    default:
      break; // ack, left, pong: nothing to show
  }
}

function connect() {
  if (!state.config) return;
  if (state.ws) {
    state.ws.onclose = null;
    state.ws.close(1000, "replaced");
  }
  setConnection(state.attempt ? "reconnecting…" : "connecting…", "reconnecting");
  const ws = new WebSocket(state.config.gateway_url, SUBPROTOCOL);
  state.ws = ws;
  ws.onopen = () => send({ type: "auth", token: state.token, id: nextId("a") });
  ws.onmessage = (m) => {
    try {
      onFrame(JSON.parse(m.data));
    } catch (e) {
      console.error("bad frame", e);
    }
  };
  ws.onclose = (e) => {
    if (state.ws !== ws) return;
    if (e.code === 4002 || e.code === 4003) {
      state.token = null; // refused or expired: read on anonymously
      renderIdentity();
    }
    // Exponential backoff with jitter: viewers of a dead gateway do not return at once.
    state.attempt += 1;
    const delay = Math.min(30000, 500 * 2 ** Math.min(state.attempt, 6)) * Math.random();
    setConnection("reconnecting…", "reconnecting");
    setTimeout(connect, delay);
  };
}

// -- actions -----------------------------------------------------------------------------

function watch(eventId) {
  if (!eventId || eventId === state.eventId) return;
  if (state.eventId) send({ type: "leave", event_id: state.eventId, id: nextId("l") });
  state.eventId = eventId;
  $("comments").replaceChildren();
  $("viewers").textContent = "–";
  notice("");
  const url = new URL(location.href);
  url.searchParams.set("event", eventId);
  history.replaceState(null, "", url);
  api(`/v1/events/${encodeURIComponent(eventId)}`)
    .then((e) => ($("event-title").textContent = `${e.title} · ${e.status}`))
    .catch((e) => ($("event-title").textContent = e.message));
  if (state.ws && state.ws.readyState === WebSocket.OPEN && state.identity) join(eventId);
}

function post(text) {
  const nonce = `w-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  send({ type: "post", event_id: state.eventId, text, nonce, id: nextId("p") });
}

async function removeComment(c) {
  try {
    await api(`/v1/events/${encodeURIComponent(c.event_id)}/retractions`, {
      method: "POST",
      body: JSON.stringify({
        user_id: c.user_id,
        comment_id: c.comment_id,
        position: c.position,
        reason: "removed by a moderator",
      }),
    });
  } catch (e) {
    notice(`Could not remove: ${e.message}`);
  }
}

async function devToken(user, moderator) {
  const q = new URLSearchParams({ user });
  if (moderator) q.append("role", "moderator");
  return (await api(`/v1/dev/token?${q}`)).token;
}

async function refreshToken() {
  if (!state.identity || !state.config.dev_tokens) return;
  try {
    state.token = await devToken(state.identity.user_id, isModerator());
    send({ type: "auth", token: state.token, id: nextId("a") });
  } catch (e) {
    notice(`Could not refresh the token: ${e.message}`);
  }
}

function signIn(token) {
  state.token = token;
  state.last = {}; // a new connection replays the backlog with the new identity's buttons
  $("comments").replaceChildren();
  state.attempt = 0;
  connect();
}

function renderIdentity() {
  const signedIn = state.identity && !state.identity.anonymous;
  $("who").textContent = signedIn
    ? `Signed in as ${state.identity.name}${isModerator() ? " (moderator)" : ""}.`
    : "Reading anonymously.";
  $("text").disabled = !signedIn;
  $("send").disabled = !signedIn;
  $("text").placeholder = signedIn ? "Say something" : "Sign in to comment";
  $("signin").hidden = !state.config.dev_tokens;
  $("paste-token").hidden = Boolean(state.config.dev_tokens);
}

async function loadEvents(selected) {
  const select = $("event");
  select.replaceChildren();
  try {
    const { items } = await api("/v1/events?limit=200");
    for (const e of items) {
      const option = document.createElement("option");
      option.value = e.event_id;
      option.textContent = `${e.title} (${e.event_id})`;
      select.append(option);
    }
  } catch (e) {
    notice(`Could not list events: ${e.message}`);
  }
  if (selected) {
    if (![...select.options].some((o) => o.value === selected)) {
      const option = document.createElement("option");
      option.value = option.textContent = selected;
      select.prepend(option);
    }
    select.value = selected;
  }
  return select.value;
}

async function main() {
  state.config = await api("/v1/config");
  renderIdentity();
  const wanted = new URLSearchParams(location.search).get("event");
  const first = await loadEvents(wanted);
  $("pick").addEventListener("submit", (e) => {
    e.preventDefault();
    const typed = $("event-id").value.trim();
    watch(typed || $("event").value);
  });
  $("event").addEventListener("change", () => watch($("event").value));
  // Top mode (docs/protocol.md): a ranked subset while the event is above its hot rate.
  $("top").addEventListener("change", () => {
    if (state.eventId) send({ type: "mode", event_id: state.eventId, mode: mode(), id: nextId("m") });
  });
  $("signin").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      signIn(await devToken($("user").value.trim(), $("as-moderator").checked));
    } catch (err) {
      notice(`Could not sign in: ${err.message}`);
    }
  });
  $("paste-token").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("token").value.trim());
  });
  $("post").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text").value.trim();
    if (!text || !state.eventId) return;
    notice("");
    post(text);
    $("text").value = "";
  });
  $("text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      $("post").requestSubmit();
    }
  });
  if (first) watch(first);
  connect();
}

main().catch((e) => notice(`The page could not start: ${e.message}`));
