// Small helpers to build DOM nodes and format figures. Every text reaches
// the page through textContent, never innerHTML: registry data is not
// trusted markup.

/** el("td", {class: "x", "data-id": 1}, "text", childNode, ...) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** "4 s", "3 min", "2 h": how long ago, from milliseconds. */
export function ago(ms) {
  if (ms === null || ms === undefined) return "—";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

/** Local date and time of µs since the Unix epoch. */
export function timeOfMicros(us) {
  if (!us) return "—";
  return new Date(us / 1000).toLocaleString();
}

/** A clock offset in µs, as "+1.2 ms" or "−3 s". */
export function offset(us) {
  if (us === null || us === undefined) return "—";
  const sign = us < 0 ? "−" : "+";
  const a = Math.abs(us);
  if (a < 1000) return `${sign}${a} µs`;
  if (a < 1e6) return `${sign}${(a / 1000).toFixed(1)} ms`;
  return `${sign}${(a / 1e6).toFixed(1)} s`;
}

/** Replaces a node's children only when what they show changed, so that
 *  focus and selection survive updates that change nothing. */
const rendered = new WeakMap();
export function replaceIfChanged(parent, key, build) {
  if (rendered.get(parent) === key) return;
  rendered.set(parent, key);
  parent.replaceChildren(...build());
}
