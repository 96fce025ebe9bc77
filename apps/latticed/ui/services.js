// Services: every path with instances, from the watch stream of the whole
// tree (one full view per change; a view is not sent again for calls), and
// the call counts of every instance read once a second from
// /v1/lattice/load, which keep the in-flight and served columns live and
// feed the in-flight sparklines.
import { call, follow, poll } from "./api.js";
import { record } from "./events.js";
import { el, replaceIfChanged, timeOfMicros } from "./format.js";
import { memberById, memberLabel, onMembers } from "./members.js";
import { SAMPLES, sparkline } from "./sparkline.js";

const views = new Map();    // path -> view JSON
const listed = new Set();   // "path kind id" of every instance shown
const history = new Map();  // "path kind id" -> in-flight samples

function keyOf(path, inst) {
  return `${path} ${inst.kind} ${inst.id}`;
}

function instancesOf(view) {
  return [...view.providers, ...view.consumers];
}

function onView(view) {
  const before = views.get(view.path);
  const now = new Map(instancesOf(view).map((i) => [keyOf(view.path, i), i]));
  for (const [key, inst] of now)
    if (!listed.has(key)) {
      listed.add(key);
      record("service", `${inst.kind} ${inst.id} listed under ${view.path} (${inst.address}:${inst.port})`);
    }
  if (before)
    for (const inst of instancesOf(before)) {
      const key = keyOf(view.path, inst);
      if (!now.has(key)) {
        listed.delete(key);
        history.delete(key);
        record("service", `${inst.kind} ${inst.id} removed from ${view.path}`);
      }
    }
  if (now.size === 0) views.delete(view.path);
  else views.set(view.path, view);
  scheduleRender();
}

async function sample() {
  const load = new Map((await call("GET", "/v1/lattice/load")).map((l) => [keyOf(l.path, l), l]));
  for (const [path, view] of views)
    for (const inst of instancesOf(view)) {
      const key = keyOf(path, inst);
      const now = load.get(key);
      if (now) {
        inst.in_flight = now.in_flight;
        inst.served = now.served;
      }
      const samples = history.get(key) || [];
      samples.push(inst.in_flight);
      if (samples.length > SAMPLES) samples.shift();
      history.set(key, samples);
    }
  scheduleRender();
}

// The health an operator reads: the worst of the instance's Consul checks,
// or, without checks, its owner's liveness (an ephemeral registration
// lives as long as the replica that made it).
function health(inst) {
  if (inst.checks.length > 0) {
    const order = ["passing", "warning", "maintenance", "critical"];
    const worst = inst.checks.reduce((w, c) => (order.indexOf(c.status) > order.indexOf(w) ? c.status : w), "passing");
    return { status: worst, detail: inst.checks.map((c) => `${c.name || c.id} (${c.type}): ${c.status}${c.output ? ` — ${c.output}` : ""}`) };
  }
  if (!inst.ephemeral) return { status: "passing", detail: ["persistent registration"] };
  const owner = memberById(inst.owner);
  const state = owner ? owner.state : "unknown";
  return { status: state === "alive" ? "passing" : state === "suspect" ? "warning" : "critical",
           detail: [`owner ${state}`] };
}

function clip(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

function tags(inst) {
  return Object.entries(inst.tags).filter(([k]) => !k.startsWith("consul:"))
    .map(([k, v]) => el("span", { class: "tag" }, v ? `${k}=${v}` : k));
}

function row(path, inst) {
  const h = health(inst);
  return el("tr", { "data-instance": `${path} ${inst.id}`, "data-kind": inst.kind, "data-health": h.status },
    el("th", { scope: "row" }, inst.id),
    el("td", {}, `${inst.address}:${inst.port}`),
    el("td", {}, inst.kind),
    el("td", {}, tags(inst)),
    el("td", { class: "num" }, inst.weight),
    el("td", {}, memberLabel(inst.owner)),
    el("td", { title: h.detail.join("\n") }, el("span", { class: `badge health-${h.status}` }, h.status),
      el("div", { class: "output" }, clip(h.detail.join("; "), 120))),
    el("td", {}, timeOfMicros(inst.epoch_us)),
    el("td", { class: "num" }, inst.in_flight),
    el("td", { class: "num" }, inst.served),
    el("td", {}, sparkline(history.get(keyOf(path, inst)) || [], `${inst.id} in flight`)));
}

function table(view) {
  const count = `${view.providers.length} provider${view.providers.length === 1 ? "" : "s"}, ` +
    `${view.consumers.length} consumer${view.consumers.length === 1 ? "" : "s"}`;
  const headingId = `svc-${encodeURIComponent(view.path)}`;
  return el("section", { class: "service", "data-path": view.path, "aria-labelledby": headingId },
    el("h3", { id: headingId }, el("code", {}, view.path), " ", el("span", { class: "muted" }, count)),
    el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, ["Instance", "Address", "Kind", "Tags", "Weight", "Owner", "Health",
        "Registered", "In flight", "Served", "In flight, last minute"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, instancesOf(view).map((inst) => row(view.path, inst))))));
}

let pending = false;
function scheduleRender() {
  if (pending) return;
  pending = true;
  setTimeout(() => {  // one render for a burst of events
    pending = false;
    render();
  }, 50);
}

function render() {
  const list = document.getElementById("services-list");
  const sorted = [...views.values()].sort((a, b) => a.path.localeCompare(b.path));
  document.getElementById("services-count").textContent = `(${sorted.length})`;
  const key = JSON.stringify([sorted, [...history], sorted.flatMap(instancesOf).map((i) => memberById(i.owner)?.state)]);
  replaceIfChanged(list, key, () => sorted.length === 0
    ? [el("p", { class: "muted" }, "No service has instances.")]
    : sorted.map(table));
}

export function start() {
  onMembers(scheduleRender);
  poll("load", 1000, sample);
  follow("/v1/lattice/watch/", "services", () => views.clear(), (type, data) => {
    if (type === "service") onView(data);
  });
}
