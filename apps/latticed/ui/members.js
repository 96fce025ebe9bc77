// Members: the member table as this daemon judges it, polled once a second
// (it changes with every heartbeat's judgement, not with registry events).
import { call, poll } from "./api.js";
import { record } from "./events.js";
import { ago, el, offset, replaceIfChanged } from "./format.js";

let members = new Map();  // id -> member JSON
const listeners = new Set();

export function onMembers(listener) {
  listeners.add(listener);
}

export function memberById(id) {
  return members.get(id);
}

function shortId(id) {
  return id.length > 8 ? `…${id.slice(-8)}` : id;
}

export function memberLabel(id) {
  const m = members.get(id);
  return m ? `${m.address} (${shortId(id)})` : shortId(id);
}

function render(list) {
  const body = document.getElementById("members-body");
  const alive = list.filter((m) => m.state === "alive").length;
  document.getElementById("members-count").textContent = `(${alive} of ${list.length} alive)`;
  // Ages move every second: rendered every poll, rows keyed for readers.
  replaceIfChanged(body, JSON.stringify(list), () => list.map((m) =>
    el("tr", { "data-member": m.id, "data-state": m.state, "data-digest": m.digest ?? "unknown" },
      el("th", { scope: "row" }, el("code", { title: m.id }, shortId(m.id)), m.self ? " (this daemon)" : ""),
      el("td", {}, m.address),
      el("td", {}, el("span", { class: `badge state-${m.state}` }, m.state)),
      el("td", {}, ago(m.state_age_ms)),
      el("td", {}, m.incarnation),
      el("td", {}, offset(m.clock_offset_us)),
      el("td", {}, m.digest === "self" ? "—"
        : m.digest ? [el("span", { class: `badge digest-${m.digest}` }, m.digest), ` ${ago(m.digest_age_ms)} ago`]
          : "not yet reported"))));
}

async function refresh() {
  const list = await call("GET", "/v1/lattice/members");
  const next = new Map(list.map((m) => [m.id, m]));
  for (const m of list) {
    const before = members.get(m.id);
    if (!before && members.size > 0) record("member", `${m.address} joined (${m.state})`);
    else if (before && before.state !== m.state) record("member", `${m.address}: ${before.state} → ${m.state}`);
  }
  for (const [id, m] of members) if (!next.has(id)) record("member", `${m.address} reaped from the table`);
  members = next;
  const self = list.find((m) => m.self);
  if (self) document.getElementById("self").textContent = `· ${self.address}`;
  render(list);
  for (const l of listeners) l();
}

export function start() {
  poll("members", 1000, refresh);
}
