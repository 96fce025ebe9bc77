// Config: the tree with values and write stamps, read again (at most once
// a second) whenever the config watch stream reports a change; set and
// delete through the API with the page's token.
import { ApiError, call, follow } from "./api.js";
import { record } from "./events.js";
import { el, replaceIfChanged, timeOfMicros } from "./format.js";

let due = false;
let lastRead = 0;

function keyPath(key) {
  return "/v1/lattice/config" + key.split("/").map(encodeURIComponent).join("/");
}

function say(text, failed) {
  const result = document.getElementById("config-result");
  result.textContent = text;
  result.dataset.outcome = failed ? "refused" : "ok";
}

async function write(method, key, value) {
  try {
    await call(method, keyPath(key), value);
    say(method === "DELETE" ? `Deleted ${key}.` : `Set ${key}.`, false);
    return true;
  } catch (e) {
    const why = e instanceof ApiError && e.status === 403
      ? "Refused: this daemon needs a write token for that. Enter one above." : `Refused: ${e.message}`;
    say(why, true);
    return false;
  }
}

function render(entries) {
  const body = document.getElementById("config-body");
  document.getElementById("config-count").textContent = `(${entries.length})`;
  replaceIfChanged(body, JSON.stringify(entries), () => entries.map((e) =>
    el("tr", { "data-key": e.key },
      el("th", { scope: "row" }, el("code", {}, e.key)),
      el("td", {}, el("code", { class: "value" }, e.value)),
      el("td", {}, timeOfMicros(e.modified_us)),
      el("td", { class: "num" }, e.flags),
      el("td", { class: "actions" },
        button("Edit", `Edit ${e.key}`, () => {
          document.getElementById("config-key").value = e.key;
          document.getElementById("config-value").value = e.value;
          document.getElementById("config-value").focus();
        }),
        button("Delete", `Delete ${e.key}`, () => write("DELETE", e.key))))));
}

function button(text, label, onClick) {
  const b = el("button", { type: "button", "aria-label": label }, text);
  b.addEventListener("click", onClick);
  return b;
}

async function read() {
  lastRead = Date.now();
  try {
    render(await call("GET", "/v1/lattice/config/?recurse&detail"));
  } catch {
    // the stream's reconnection shows the state; the next change reads again
  }
}

// At most one read a second, however fast changes arrive.
function changed() {
  if (due) return;
  due = true;
  setTimeout(() => {
    due = false;
    read();
  }, Math.max(0, 1000 - (Date.now() - lastRead)));
}

export function start() {
  document.getElementById("config-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    let key = document.getElementById("config-key").value.trim();
    if (!key.startsWith("/")) key = `/${key}`;
    await write("PUT", key, document.getElementById("config-value").value);
  });
  follow("/v1/lattice/watch/?config", "config", changed, (type, data) => {
    if (type !== "config") return;
    record("config", data.value === null ? `${data.key} deleted` : `${data.key} = ${data.value}`);
    changed();
  });
}
