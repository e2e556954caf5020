// cachesync's page: the overview, a conflict, a directory of the working set. Three views
// chosen by the address's fragment (#/, #/conflict?ws=&path=, #/files?ws=&path=); each
// draws from the JSON API and every change goes through a POST the server checks.
"use strict";

const view = document.getElementById("view");
const message = document.getElementById("message");

// An element with attributes and children (strings become text: nothing is parsed as HTML).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function say(text, kind) {
  message.textContent = text || "";
  message.className = kind || "";
}

async function getJson(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function post(url, body) {
  const r = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(answer.error || r.statusText);
  return answer;
}

// Actions running from this page: the overview is not redrawn under them.
let pending = 0;

// Runs an action from a button: the button waits, the result is said, the view redrawn.
async function act(button, what, run) {
  button.disabled = true;
  pending++;
  say(what + "…");
  try {
    const answer = await run();
    say(answer.message || what + ": done", "done");
  } catch (e) {
    say(what + ": " + e.message, "error");
  } finally {
    pending--;
    button.disabled = false;
    route();
  }
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function when(ns) {
  return ns ? new Date(ns / 1e6).toLocaleString() : "the clone";
}

function q(params) {
  return new URLSearchParams(params).toString();
}

function name(path) {
  return path.split("/").filter(Boolean).pop() || path;
}

// A path as the commands print it (quoted when it is not plain text) and its bytes in hex
// when it is not UTF-8: both go back to the server, which reads the name from them.
function at(ws, entry) {
  const a = { ws, path: entry.path };
  if (entry.path_hex) a.path_hex = entry.path_hex;
  return a;
}

// ---- the overview ----

function fact(label, ...value) {
  return [el("dt", {}, label), el("dd", {}, ...value)];
}

function cacheGauge(cache) {
  if (!cache.budget) return bytes(cache.used) + " (no budget)";
  return el("span", {},
    el("meter", { min: 0, max: cache.budget, low: cache.cull_start, high: cache.cull_to,
      optimum: 0, value: cache.used, title: "cull starts at " + bytes(cache.cull_start) }),
    bytes(cache.used) + " of " + bytes(cache.budget) +
      " (culls from " + bytes(cache.cull_start) + " down to " + bytes(cache.cull_to) + ")");
}

// The last state read of each workspace: while a command holds a workspace (a sync from
// this page or from a terminal), `status` cannot read it, and the card shows the last one.
const lastStatus = new Map();

function workspaceCard(w) {
  const busy = !w.status && w.busy;
  if (w.status) lastStatus.set(w.path, w.status);
  const s = w.status || (busy ? lastStatus.get(w.path) : null);
  if (!s) {
    return el("section", { class: "ws", "data-ws": w.path },
      el("h3", {}, name(w.path)), el("p", { class: "where" }, w.path),
      el("p", { class: busy ? "quiet" : "error" }, busy
        ? "busy: another cachesync command is working on it; shown when it is done"
        : "cannot read its state: " + w.error));
  }
  const online = s.mode === "connected";
  const since = online ? "" : " since " + when(s.since_ns) + (s.manual ? ", by hand" : "");
  const why = !online && s.reason ? " (" + s.reason + ")" : "";
  const r = s.readiness;
  const ready = r.working_set_files
    ? r.present + " of " + r.working_set_files + " files here" +
      (r.missing_bytes ? ", " + bytes(r.missing_bytes) + " missing" : "")
    : "every file is here";
  const open = s.conflicts.filter((c) => c.state !== "resolved");
  const switchButton = el("button", { class: "switch primary", type: "button" },
    online ? "Go offline" : "Reconnect");
  switchButton.addEventListener("click", () => act(switchButton,
    online ? "Going offline" : "Reconnecting",
    () => post("/api/mode", { ws: w.path, online: !online })));
  // Offline by hand, nothing touches the share until Reconnect; offline by itself, a sync
  // tries the share again.
  const syncButton = el("button", { class: "sync", type: "button", disabled: !online && s.manual },
    "Sync now");
  syncButton.addEventListener("click", () => act(syncButton, "Syncing", async () => {
    const a = await post("/api/sync", { ws: w.path });
    if (!a.ok) throw new Error(a.message || "exit " + a.code);
    return { message: a.code === 7 ? "synced; conflicts remain" : "synced" };
  }));
  return el("section", { class: "ws", "data-ws": w.path },
    el("h3", {}, name(w.path), " ", el("span", { class: "badge mode " + s.mode }, s.mode),
      busy ? [" ", el("span", { class: "badge busy" }, "busy")] : null),
    el("p", { class: "where" }, w.path + " ⇄ " + s.remote + since + why),
    el("dl", { class: "facts" },
      fact("to push", String(s.pending.push)),
      fact("to pull", String(s.pending.pull)),
      fact("conflicts", String(open.length)),
      fact("cache", cacheGauge(s.cache)),
      fact("offline readiness", ready),
      fact("remote as of", s.remote_seen_ns ? when(s.remote_seen_ns) : "never looked")),
    el("div", { class: "actions" }, switchButton, syncButton,
      el("a", { class: "files", href: "#/files?" + q({ ws: w.path, path: "" }) }, "Files"),
      el("a", { class: "history", href: "#/log?" + q({ ws: w.path }) }, "History")),
    open.length ? el("ul", { class: "conflicts" }, open.map((c) =>
      el("li", {}, el("a", { class: "conflict", "data-path": c.path,
        href: "#/conflict?" + q(at(w.path, c)) }, c.path), " — " + c.kind)))
      : null);
}

function serverSwitches(host) {
  const off = el("button", { type: "button", class: "server-off" }, "All on " + host + " offline");
  off.addEventListener("click", () => act(off, "Going offline",
    () => post("/api/mode", { server: host, online: false })));
  const on = el("button", { type: "button", class: "server-on" }, "Reconnect all on " + host);
  on.addEventListener("click", () => act(on, "Reconnecting",
    () => post("/api/mode", { server: host, online: true })));
  return [off, on];
}

// While a workspace is busy, the overview looks again: 1 s, then 2, 4, 8 s apart.
let busyDelay = 0;
let busyTimer = null;

async function overview() {
  const { workspaces } = await getJson("/api/workspaces");
  clearTimeout(busyTimer);
  if (workspaces.some((w) => w.busy)) {
    busyDelay = Math.min(busyDelay ? busyDelay * 2 : 1000, 8000);
    busyTimer = setTimeout(() => { if (onOverview()) route(); }, busyDelay);
  } else {
    busyDelay = 0;
  }
  if (!workspaces.length) {
    return [el("p", { class: "quiet" },
      "No workspace yet: `cachesync clone REMOTE DIR` makes one, and it shows here.")];
  }
  const groups = new Map();
  for (const w of workspaces) {
    const host = (w.status && w.status.server) || "";
    if (!groups.has(host)) groups.set(host, []);
    groups.get(host).push(w);
  }
  return [...groups].map(([host, list]) => el("div", { class: "server-group" },
    el("h2", {}, host ? "Server " + host : "Local directories", host ? serverSwitches(host) : null),
    list.map(workspaceCard)));
}

// ---- a conflict ----

function pane(title, cls, version, lines) {
  let body;
  if (!version.present) body = el("div", { class: "facts-only" }, "absent on this side");
  else if (lines) body = el("pre", {}, lines.map((l) => el("div", { class: l.tag }, l.text)));
  else if (version.text !== null && version.text !== undefined) {
    body = el("pre", {}, version.text.split("\n").map((t) => el("div", { class: "same" }, t)));
  } else {
    body = el("div", { class: "facts-only" },
      version.note || (version.binary ? "binary file, " + bytes(version.size) : "no content"));
  }
  return el("div", { class: "pane " + cls }, el("h3", {}, title), body);
}

function variantFacts(v) {
  if (!v) return "absent";
  return v.kind + ", mode " + (v.mode & 0o7777).toString(8) +
    (v.kind === "file" ? ", " + bytes(v.size) : "") + (v.target ? " → " + v.target : "");
}

async function conflict(params) {
  const ws = params.get("ws");
  const c = await getJson("/api/conflict?" + params.toString());
  const r = c.record;
  const path = r.path;
  const take = (which, label, cls) => {
    const b = el("button", { type: "button", id: "take-" + which, class: cls || "" }, label);
    b.addEventListener("click", () => act(b, label, async () => {
      const a = await post("/api/resolve", { ...at(ws, r), take: which });
      location.hash = "#/";
      return a;
    }));
    return b;
  };
  const parts = [
    el("p", {}, el("a", { href: "#/" }, "← all workspaces")),
    el("h2", {}, "Conflict: " + path),
    el("p", { class: "where" }, r.kind + " conflict in " + ws + ", since " + when(r.since_ns)),
    el("dl", { class: "facts" },
      fact("server's", variantFacts(r.server)),
      fact("yours", variantFacts(r.client)),
      fact("base (last agreed)", variantFacts(r.base))),
    el("div", { class: "panes" },
      pane("Server's version", "server", c.server, c.server_lines),
      pane("Your version", "client", c.client, c.client_lines),
      pane("Base (last agreed)", "base", c.base, null)),
    el("div", { class: "actions" },
      take("client", "Keep mine"), take("server", "Take the server's", "primary"),
      c.merge && c.merge.clean ? take("merged", "Take the merge") : null,
      r.base ? take("base", "Go back to the base") : null),
  ];
  if (c.merge) {
    const area = el("textarea", { id: "merged", spellcheck: "false" });
    area.value = c.merge.text;
    const save = el("button", { type: "button", id: "save-merged" }, "Save as the resolution");
    save.addEventListener("click", () => act(save, "Saving the merged text", async () => {
      if (/^(<{7}|={7}|>{7})( |$)/m.test(area.value) &&
          !confirm("The text still holds conflict markers (<<<<<<<, =======, >>>>>>>). Save it as it is?")) {
        return { message: "not saved" };
      }
      const a = await post("/api/resolve", { ...at(ws, r), text: area.value });
      location.hash = "#/";
      return a;
    }));
    parts.push(el("h3", {}, c.merge.clean
      ? "The merge (the edits do not overlap): edit it if you like"
      : "The merge, with the overlapping edits marked: edit it, then save"), area,
    el("div", { class: "actions" }, save));
  }
  return parts;
}

// ---- the working set ----

async function files(params) {
  const ws = params.get("ws");
  const dir = params.get("path") || "";
  const entries = await getJson("/api/files?" + params.toString());
  const verb = (e, v, label) => {
    const b = el("button", { type: "button", class: v }, label);
    b.addEventListener("click", () => act(b, label + " " + e.path,
      () => post("/api/presence", { ...at(ws, e), verb: v })));
    return b;
  };
  // A plain path's parent is the path up to its last slash; a quoted one (a name that is
  // not plain text) goes up to the top, the one place whose name is sure.
  const plain = !dir.startsWith("\"") && !params.get("path_hex");
  const up = { ws, path: plain && dir.includes("/") ? dir.slice(0, dir.lastIndexOf("/")) : "" };
  const rows = entries.map((e) => el("tr", { "data-path": e.path },
    el("td", {}, e.kind === "dir"
      ? el("a", { href: "#/files?" + q(at(ws, e)) }, name(e.path) + "/")
      : name(e.path)),
    el("td", { class: "state" }, e.state),
    el("td", {}, e.kind === "file" ? bytes(e.size) : e.kind),
    el("td", { class: "actions" },
      verb(e, "pin", "Pin"), verb(e, "unpin", "Unpin"),
      e.state === "remote-only" ? verb(e, "get", "Get") : verb(e, "drop", "Drop"))));
  return [
    el("p", {}, el("a", { href: "#/" }, "← all workspaces"),
      dir ? [" · ", el("a", { href: "#/files?" + q(up) }, "↑ up")] : null),
    el("h2", {}, "Files: " + name(ws) + "/" + dir),
    entries.length
      ? el("table", { class: "files" },
        el("thead", {}, el("tr", {}, ["name", "state", "size", ""].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows))
      : el("p", { class: "quiet" }, "empty directory"),
  ];
}

// ---- the operation log ----

async function history(params) {
  const ws = params.get("ws");
  const ops = await getJson("/api/log?" + q({ ws }));
  const undo = (op) => {
    const b = el("button", { type: "button", class: "undo", "data-op": String(op.id) }, "Undo");
    b.addEventListener("click", () => {
      const here = Boolean(op.local_paths);
      if (!confirm("Undo operation " + op.id + " (" + op.command + ")" + (here
          ? " in this workspace? What it changed here goes back as it was before it."
          : " on both sides? Every path it changed goes back to the version agreed before it."))) return;
      act(b, "Undoing operation " + op.id, async () => {
        const a = await post("/api/undo", { ws, op: op.id });
        const paths = (a.report && a.report.paths) || [];
        const done = paths.filter((p) => p.action !== "left" && p.action !== "undone").length;
        const left = paths.filter((p) => p.action === "left").map((p) => p.path);
        return { message: "operation " + op.id + " undone: " + done + " path(s) put back" +
          (left.length ? "; left as they are (changed since): " + left.join(", ") : "") +
          (a.code === 7 && !left.length ? "; conflicts remain" : "") };
      });
    });
    return b;
  };
  const rows = [...ops].reverse().map((op) => el("tr", { "data-op": String(op.id) },
    el("td", {}, String(op.id)),
    el("td", {}, when(op.started_ns)),
    el("td", {}, op.command),
    el("td", { class: "state" }, op.state),
    el("td", {}, op.summary || ""),
    el("td", { class: "actions" }, (op.base_after || op.local_paths) && op.command !== "clone" ? undo(op) : null)));
  return [
    el("p", {}, el("a", { href: "#/" }, "← all workspaces")),
    el("h2", {}, "History: " + name(ws)),
    el("p", { class: "quiet" }, "Undo takes an operation back on both sides; what it brought " +
      "stays in the store (cachesync restore PATH --at OP)."),
    ops.length
      ? el("table", { class: "files" },
        el("thead", {}, el("tr", {}, ["op", "when", "command", "state", "what", ""].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows))
      : el("p", { class: "quiet" }, "no operation yet"),
  ];
}

// ---- routing, switches for all, events ----

function onOverview() {
  return (location.hash || "#/") === "#/" || location.hash === "#";
}

async function draw() {
  const [where, query] = (location.hash.slice(1) || "/").split(/\?(.*)/s);
  const params = new URLSearchParams(query || "");
  try {
    const parts = where === "/conflict" ? await conflict(params)
      : where === "/files" ? await files(params)
        : where === "/log" ? await history(params) : await overview();
    view.replaceChildren(...parts);
  } catch (e) {
    view.replaceChildren(el("p", { class: "error" }, e.message));
  }
}

// One drawing at a time (each reads the workspaces, which a second would race for); one
// asked for meanwhile runs once the first is done.
let drawing = false;
let again = false;
async function route() {
  if (drawing) { again = true; return; }
  drawing = true;
  try {
    do { again = false; await draw(); } while (again);
  } finally {
    drawing = false;
  }
}

for (const [id, online] of [["all-offline", false], ["all-online", true]]) {
  const b = document.getElementById(id);
  b.addEventListener("click", () => act(b, online ? "Reconnecting all" : "Going offline",
    () => post("/api/mode", { all: true, online })));
}

let redraw = null;
const events = new EventSource("/api/events");
events.onmessage = (m) => {
  let e;
  try { e = JSON.parse(m.data); } catch { return; }
  const list = document.getElementById("events");
  list.prepend(el("li", { class: "event " + e.kind },
    el("span", { class: "kind" }, e.kind), " " + name(e.workspace || ""),
    e.path ? " · " + e.path : "", e.reason ? " (" + e.reason + ")" : "",
    el("br"), el("small", { class: "quiet" }, when(e.time_ns))));
  while (list.children.length > 100) list.lastChild.remove();
  // The overview follows what happens elsewhere (a sync in a terminal, a switch): once a
  // burst of events is over, not once per event.
  clearTimeout(redraw);
  redraw = setTimeout(() => { if (onOverview() && pending === 0) route(); }, 300);
};

window.addEventListener("hashchange", route);
route();
