// The live feed: changes as this daemon's streams and member table show
// them, newest first, with the time the page learned of them.
import { el } from "./format.js";

const MAX_EVENTS = 200;

export function record(kind, text) {
  const list = document.getElementById("events-list");
  const now = new Date();
  list.prepend(el("li", { "data-kind": kind },
    el("time", { datetime: now.toISOString() }, now.toLocaleTimeString()), " ",
    el("span", { class: `kind kind-${kind}` }, kind), " ", text));
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}
