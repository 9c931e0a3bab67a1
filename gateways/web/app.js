// The livecomments web page: a viewer of one event over the WebSocket protocol
// livecomments.v1 (docs/protocol.md), and a moderator's view of it (`moderate`
// messages: held comments, removal, timeouts, bans, slow mode, strictness). REST is used
// only for what the protocol does not carry: the list of events, an event's settings,
// and a development token.
"use strict";

const SUBPROTOCOL = "livecomments.v1";
const KEEP = 500; // comments kept on the page; older ones leave the DOM
const HELD_EVERY_MS = 4000; // the held list is polled: nothing pushes new holds
const HELD_LIMIT = 50;
const ANSWER_WITHIN_MS = 15000; // a `moderate` request without a reply by then failed

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
  authed: false, // `welcome` received on the current connection
  requests: new Map(), // id of a `moderate` request -> {resolve, reject, timer}
  heldBusy: false,
  heldAgain: false, // a refresh was asked for while one was in flight
  reviewed: new Set(), // "event position" of decisions sent: a stale listing must not revive them
  settingsFor: null, // the event whose moderation settings the form shows
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

function failure(code, message) {
  return Object.assign(new Error(message), { code });
}

function duration(ms) {
  const s = Math.ceil(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (options.body) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { ...options, headers });
  const body = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) {
    const err = (body && body.error) || { code: "http_" + r.status, message: r.statusText };
    throw failure(err.code, err.message);
  }
  return body;
}

// -- rendering ---------------------------------------------------------------------------

function timeOf(ms) {
  return ms ? new Date(ms).toLocaleTimeString([], { hour12: false }) : "";
}

function isStaff(roles) {
  return (roles || []).some((r) => r === "moderator" || r === "broadcaster" || r === "admin");
}

function isModerator() {
  return isStaff(state.identity && state.identity.roles);
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
  if (isStaff(c.roles)) author.classList.add("moderator");
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
  li.dataset.name = author.textContent;
  if (!pending && isModerator()) {
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove the comment of ${author.textContent}`);
    li.append(" ", remove);
    // Not on one's own comments, nor on a moderator's: the service refuses those.
    if (c.user_id !== state.identity.user_id && !isStaff(c.roles)) {
      const more = document.createElement("button");
      more.type = "button";
      more.className = "author-menu";
      more.textContent = "User…";
      more.setAttribute("aria-haspopup", "menu");
      more.setAttribute("aria-expanded", "false");
      more.setAttribute("aria-controls", "user-menu");
      more.setAttribute("aria-label", `Time out, ban or hide ${author.textContent}`);
      li.append(" ", more);
    }
  }
  return li;
}

function commentOf(li) {
  return {
    event_id: state.eventId,
    comment_id: li.dataset.commentId,
    user_id: li.dataset.userId,
    name: li.dataset.name,
    position: li.dataset.position == null ? null : Number(li.dataset.position),
  };
}

// Takes `li` out of its list. When it holds the keyboard focus, the focus moves to the
// same button of the nearest item after it (else before it), else to `fallback`: never
// to the top of the page.
function dropKeepingFocus(li, fallback) {
  const focused = document.activeElement;
  if (focused && focused !== li && li.contains(focused)) {
    const kind = focused.classList[0];
    let target = null;
    for (const step of ["nextElementSibling", "previousElementSibling"]) {
      for (let x = li[step]; x && !target; x = x[step]) {
        target = kind ? x.querySelector(`button.${CSS.escape(kind)}`) : null;
      }
      if (target) break;
    }
    (target || fallback).focus();
  }
  li.remove();
}

// A button that is busy stays focusable (a disabled one would drop the focus to <body>).
function busy(li, on) {
  li.querySelectorAll("button").forEach((b) => b.setAttribute("aria-disabled", String(on)));
}

function findComment(commentId) {
  return document.querySelector(`#comments li[data-comment-id="${CSS.escape(commentId)}"]`);
}

function showComment(c, pending) {
  const list = $("comments");
  const existing = findComment(c.comment_id);
  if (c.removed) {
    if (existing) dropKeepingFocus(existing, $("comments-title"));
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
    document.querySelectorAll(sel).forEach((li) => dropKeepingFocus(li, $("comments-title")));
  } else if (item.comment_id) {
    const li = findComment(item.comment_id);
    if (li) dropKeepingFocus(li, $("comments-title"));
  }
}

// -- the connection ----------------------------------------------------------------------

function send(frame) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(frame));
}

function live() {
  return Boolean(state.ws && state.ws.readyState === WebSocket.OPEN && state.authed);
}

// One `moderate` request: resolves with the `moderated` reply's result, rejects with the
// `error` frame's code and message (same id), or when no reply comes in time.
function moderate(action, fields) {
  return new Promise((resolve, reject) => {
    if (!live()) {
      reject(failure("unavailable", "not connected to the gateway"));
      return;
    }
    const id = nextId("x");
    const timer = setTimeout(() => {
      state.requests.delete(id);
      reject(failure("timeout", "the gateway did not answer"));
    }, ANSWER_WITHIN_MS);
    state.requests.set(id, { resolve, reject, timer });
    send({ type: "moderate", action, id, ...fields });
  });
}

function settle(f) {
  const request = f.id != null && state.requests.get(f.id);
  if (!request) return false;
  state.requests.delete(f.id);
  clearTimeout(request.timer);
  if (f.type === "error") request.reject(failure(f.code, f.message));
  else request.resolve(f.result || {});
  return true;
}

function abandonRequests() {
  for (const [id, request] of state.requests) {
    clearTimeout(request.timer);
    request.reject(failure("unavailable", "the connection closed before the answer"));
    state.requests.delete(id);
  }
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
      state.authed = true;
      state.attempt = 0;
      renderIdentity();
      if (state.eventId) join(state.eventId);
      if (isModerator()) {
        if (state.settingsFor !== state.eventId) loadEvent(state.eventId);
        refreshHeld();
      }
      break;
    case "moderated":
      settle(f);
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
      if (settle(f)) break; // the answer to a moderator's request: its caller reports it
      if (f.code === "rate_limited" && f.retry_after_ms) {
        notice(`Slow down: try again in ${Math.ceil(f.retry_after_ms / 1000)} s.`);
      } else if (f.code === "user_timed_out") {
        const left = f.retry_after_ms ? ` for ${duration(f.retry_after_ms)}` : "";
        notice(`A moderator timed you out: you cannot post${left}.`);
      } else if (f.code === "user_banned") {
        notice("A moderator banned you from posting.");
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
  state.authed = false;
  abandonRequests();
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
    state.authed = false;
    abandonRequests();
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
  closeMenu(false);
  $("held").replaceChildren();
  heldCount(0, null);
  const url = new URL(location.href);
  url.searchParams.set("event", eventId);
  history.replaceState(null, "", url);
  loadEvent(eventId);
  if (live()) {
    join(eventId);
    refreshHeld();
  }
}

// The event's title, and for a moderator its settings (the API shows them to moderators).
async function loadEvent(eventId) {
  if (!eventId) return;
  try {
    const e = await api(`/v1/events/${encodeURIComponent(eventId)}`);
    if (eventId !== state.eventId) return;
    $("event-title").textContent = `${e.title} · ${e.status}`;
    if (e.strictness != null) showSettings(e);
  } catch (err) {
    if (eventId === state.eventId) $("event-title").textContent = err.message;
  }
}

function post(text) {
  const nonce = `w-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  send({ type: "post", event_id: state.eventId, text, nonce, id: nextId("p") });
}

// -- the moderator's view ----------------------------------------------------------------

function modStatus(text, undo) {
  const el = $("mod-status");
  const hadFocus = el.contains(document.activeElement); // its undo button, just pressed
  el.replaceChildren(text);
  if (hadFocus) el.focus();
  if (undo) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "secondary undo";
    b.textContent = undo.label;
    b.addEventListener("click", () => {
      if (b.getAttribute("aria-disabled") === "true") return;
      b.setAttribute("aria-disabled", "true");
      moderate(undo.action, undo.fields)
        .then(() => modStatus(undo.done))
        .catch((e) => modStatus(`Could not undo: ${e.message} (${e.code})`));
    });
    el.append(" ", b);
  }
}

async function removeComment(li) {
  const c = commentOf(li);
  li.dataset.state = "removing";
  busy(li, true);
  const fields = { event_id: c.event_id, comment_id: c.comment_id };
  if (c.position != null) fields.position = c.position;
  try {
    // The service finds the comment's author in the permanent tier, which may lag the
    // live one by a moment: a comment on screen but not found there yet is retried.
    for (let attempt = 1; ; attempt += 1) {
      try {
        await moderate("remove", fields);
        break;
      } catch (e) {
        if (e.code !== "comment_not_found" || attempt >= 4) throw e;
        await new Promise((resolve) => setTimeout(resolve, 1500));
      }
    }
    // Its `retracted` frame takes it off every page, this one included.
    modStatus(`Removed a comment of ${c.name}.`);
  } catch (e) {
    li.dataset.state = "published";
    busy(li, false);
    modStatus(`Could not remove the comment of ${c.name}: ${e.message} (${e.code})`);
  }
}

const AUTHOR_ACTIONS = {
  timeout: (c, seconds) => ({
    fields: { user_id: c.user_id, duration_s: seconds, event_id: c.event_id },
    done: `${c.name} cannot post for ${duration(seconds * 1000)}.`,
    undo: { action: "untimeout", label: "Lift the timeout", done: `${c.name} may post again.` },
  }),
  ban: (c) => ({
    fields: { user_id: c.user_id, event_id: c.event_id, clear: true },
    done: `${c.name} is banned; their comments here are removed.`,
    undo: { action: "unban", label: "Unban", done: `${c.name} is no longer banned.` },
  }),
  hide: (c) => ({
    fields: { user_id: c.user_id },
    done: `${c.name} is hidden: from now on only they see their comments.`,
    undo: { action: "unhide", label: "Unhide", done: `${c.name} is visible again.` },
  }),
};

async function actOnAuthor(action, seconds, c) {
  const plan = AUTHOR_ACTIONS[action](c, seconds);
  try {
    await moderate(action, plan.fields);
    const undo = { ...plan.undo, fields: { user_id: c.user_id } };
    undo.label = `${plan.undo.label} (${c.name})`;
    modStatus(plan.done, undo);
  } catch (e) {
    modStatus(`Could not ${action} ${c.name}: ${e.message} (${e.code})`);
  }
}

// One menu for every comment (a menu per comment would be 500 of them): opened under the
// button that asked, arrow keys move, Escape closes and gives focus back.
const menu = { button: null, comment: null };

function menuItems() {
  return [...$("user-menu").querySelectorAll("[role=menuitem]")];
}

function openMenu(button) {
  closeMenu(false);
  const el = $("user-menu");
  menu.button = button;
  menu.comment = commentOf(button.closest("li"));
  el.setAttribute("aria-label", `Moderate ${menu.comment.name}`);
  el.hidden = false;
  const r = button.getBoundingClientRect();
  const left = Math.max(8, Math.min(r.left, innerWidth - el.offsetWidth - 8));
  const below = r.bottom + 4 + el.offsetHeight <= innerHeight;
  el.style.left = `${left}px`;
  el.style.top = `${below ? r.bottom + 4 : Math.max(8, r.top - el.offsetHeight - 4)}px`;
  button.setAttribute("aria-expanded", "true");
  menuItems()[0].focus();
}

function closeMenu(refocus) {
  const el = $("user-menu");
  if (el.hidden) return;
  el.hidden = true;
  const button = menu.button;
  menu.button = menu.comment = null;
  if (button) {
    button.setAttribute("aria-expanded", "false");
    if (refocus && button.isConnected) button.focus();
  }
}

function onMenuKey(e) {
  const items = menuItems();
  const at = items.indexOf(document.activeElement);
  const go = (i) => items[(i + items.length) % items.length].focus();
  if (e.key === "ArrowDown") go(at + 1);
  else if (e.key === "ArrowUp") go(at - 1);
  else if (e.key === "Home") go(0);
  else if (e.key === "End") go(items.length - 1);
  else if (e.key === "Escape") closeMenu(true);
  else if (e.key === "Tab") closeMenu(false);
  else return;
  if (e.key !== "Tab") e.preventDefault();
}

function onMenuClick(e) {
  const item = e.target.closest("[role=menuitem]");
  if (!item || !menu.comment) return;
  const c = menu.comment;
  closeMenu(true);
  actOnAuthor(item.dataset.action, Number(item.dataset.seconds || 0), c);
}

function onCommentsClick(e) {
  const button = e.target.closest("button");
  if (!button || !isModerator()) return;
  const li = button.closest("li");
  if (li.dataset.state === "removing") return;
  if (button.classList.contains("remove")) removeComment(li);
  else if (button.classList.contains("author-menu")) {
    if (menu.button === button) closeMenu(true);
    else openMenu(button);
  }
}

function heldCount(n, more) {
  $("held-count").textContent = n ? `(${n}${more ? "+" : ""})` : "";
  $("held-empty").hidden = n > 0;
}

function heldItem(h) {
  const li = document.createElement("li");
  li.dataset.position = String(h.position);
  li.dataset.commentId = h.comment_id;
  li.dataset.userId = h.user_id;
  const time = document.createElement("time");
  time.className = "time";
  if (h.held_at) time.dateTime = new Date(h.held_at).toISOString();
  time.textContent = timeOf(h.held_at || h.submitted_at);
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = h.user_id;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = h.text; // untrusted, like every comment
  const why = document.createElement("span");
  why.className = "why";
  const scores = Object.entries(h.scores || {})
    .map(([k, v]) => `${k} ${Number(v).toFixed(2)}`)
    .join(", ");
  why.textContent = [(h.reasons || []).join(", "), scores].filter(Boolean).join(" · ");
  const actions = document.createElement("span");
  actions.className = "actions";
  for (const [decision, label] of [["approve", "Approve"], ["reject", "Reject"]]) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = decision;
    b.dataset.decision = decision;
    b.textContent = label;
    b.setAttribute("aria-label", `${label} the comment of ${h.user_id}: ${h.text.slice(0, 60)}`);
    actions.append(b);
  }
  li.append(time, author, text, why, actions);
  return li;
}

function dropHeld(li) {
  dropKeepingFocus(li, $("held-refresh"));
}

// Updates the list in place, so that screen readers hear only new holds (aria-live
// additions) and a focused button stays where it is.
function renderHeld(items, more) {
  const list = $("held");
  items = items.filter((h) => !state.reviewed.has(`${h.event_id} ${h.position}`));
  const wanted = new Set(items.map((h) => String(h.position)));
  for (const li of [...list.children]) {
    if (!wanted.has(li.dataset.position) && li.dataset.state !== "reviewing") dropHeld(li);
  }
  const shown = new Map([...list.children].map((li) => [li.dataset.position, li]));
  for (const h of items) {
    if (shown.has(String(h.position))) continue;
    const li = heldItem(h);
    const after = [...list.children].find((x) => Number(x.dataset.position) > h.position);
    list.insertBefore(li, after || null);
  }
  heldCount(list.children.length, more);
}

async function refreshHeld() {
  if (!isModerator() || !state.eventId || !live()) return;
  if (state.heldBusy) {
    state.heldAgain = true;
    return;
  }
  const eventId = state.eventId;
  state.heldBusy = true;
  try {
    const r = await moderate("held", { event_id: eventId, limit: HELD_LIMIT });
    if (eventId === state.eventId) renderHeld(r.items || [], r.next_after != null);
  } catch (e) {
    const text = `Could not list held comments: ${e.message} (${e.code})`;
    if ($("mod-status").textContent !== text) modStatus(text);
  } finally {
    state.heldBusy = false;
  }
  if (state.heldAgain) {
    state.heldAgain = false;
    refreshHeld();
  }
}

async function review(li, decision) {
  const position = Number(li.dataset.position);
  const who = li.dataset.userId;
  li.dataset.state = "reviewing";
  busy(li, true);
  const key = `${state.eventId} ${position}`;
  try {
    await moderate(decision, { event_id: state.eventId, position });
    state.reviewed.add(key);
    modStatus(`${decision === "approve" ? "Approved" : "Rejected"} the comment of ${who}.`);
    dropHeld(li);
  } catch (e) {
    if (e.code === "already_reviewed") {
      state.reviewed.add(key);
      modStatus(`Another moderator already reviewed the comment of ${who}.`);
      dropHeld(li);
    } else {
      li.dataset.state = "";
      busy(li, false);
      modStatus(`Could not ${decision} the comment of ${who}: ${e.message} (${e.code})`);
    }
  }
  refreshHeld();
}

function onHeldClick(e) {
  const button = e.target.closest("button[data-decision]");
  const li = button && button.closest("li");
  if (li && li.dataset.state !== "reviewing") review(li, button.dataset.decision);
}

function showSettings(e) {
  state.settingsFor = e.event_id || state.eventId;
  if (e.slow_mode_s != null) $("slow-mode").value = String(e.slow_mode_s);
  if (e.strictness != null) $("strictness").value = String(e.strictness).toLowerCase();
  $("settings").dataset.slowMode = $("slow-mode").value;
  $("settings").dataset.strictness = $("strictness").value;
}

async function applySettings() {
  const apply = $("apply-settings");
  if (apply.getAttribute("aria-disabled") === "true") return; // the last change is in flight
  const form = $("settings");
  const eventId = state.eventId;
  const seconds = Number($("slow-mode").value);
  const strictness = $("strictness").value;
  const changes = [];
  if (String(seconds) !== form.dataset.slowMode) {
    const said = `slow mode ${seconds ? `${seconds} s` : "off"}`;
    changes.push(["slow_mode", { event_id: eventId, seconds }, said]);
  }
  if (strictness !== form.dataset.strictness) {
    changes.push(["strictness", { event_id: eventId, strictness }, `strictness ${strictness}`]);
  }
  if (!changes.length) {
    modStatus("Nothing to change.");
    return;
  }
  apply.setAttribute("aria-disabled", "true");
  try {
    for (const [action, fields] of changes) {
      const result = await moderate(action, fields);
      if (eventId === state.eventId) showSettings({ ...result, event_id: eventId });
    }
    modStatus(`Applied: ${changes.map((c) => c[2]).join(", ")}.`);
  } catch (e) {
    modStatus(`Could not apply the settings: ${e.message} (${e.code})`);
  } finally {
    apply.setAttribute("aria-disabled", "false");
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
  const moderating = Boolean(signedIn && isModerator());
  $("mod").hidden = !moderating;
  $("skip-held").hidden = !moderating;
  document.body.classList.toggle("moderating", moderating);
  if (!moderating) closeMenu(false);
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
  $("comments").addEventListener("click", onCommentsClick);
  $("comments").addEventListener("scroll", () => closeMenu(false), { passive: true });
  $("user-menu").addEventListener("keydown", onMenuKey);
  $("user-menu").addEventListener("click", onMenuClick);
  document.addEventListener("pointerdown", (e) => {
    if (!e.target.closest("#user-menu, button.author-menu")) closeMenu(false);
  });
  addEventListener("resize", () => closeMenu(false));
  $("held").addEventListener("click", onHeldClick);
  $("held-refresh").addEventListener("click", () => refreshHeld());
  $("settings").addEventListener("submit", (e) => {
    e.preventDefault();
    applySettings();
  });
  setInterval(() => {
    if (!document.hidden) refreshHeld();
  }, HELD_EVERY_MS);
  if (first) watch(first);
  connect();
}

main().catch((e) => notice(`The page could not start: ${e.message}`));
