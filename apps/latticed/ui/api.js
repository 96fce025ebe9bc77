// latticed's HTTP API as the console uses it: requests with the token the
// page holds (kept in session storage only: gone when the tab closes), and
// server-sent event streams read through fetch, so the token travels in a
// header rather than in a URL, with reconnection and backoff.

const TOKEN_KEY = "lattice.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra = {}) {
  const t = token();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
}

/** Thrown for an answer that is not 2xx: `status` and the API's message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function errorOf(res) {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.error) message = body.error;
  } catch {
    // not JSON: the status line says enough
  }
  return new ApiError(res.status, message);
}

/** The parsed JSON answer of one request; ApiError for a refusal. */
export async function call(method, path, body) {
  const init = { method, headers: headers(), cache: "no-store" };
  if (body !== undefined) {
    init.body = body;
    init.headers = headers({ "Content-Type": "text/plain; charset=utf-8" });
  }
  const res = await fetch(path, init);
  if (!res.ok) throw await errorOf(res);
  return res.json();
}

// Connection state across every stream and poll: "live" when all are,
// else "reconnecting" (with when the next try is due), shown in the header.
const sources = new Map();
const listeners = new Set();

export function onConnection(listener) {
  listeners.add(listener);
}

export function report(source, state, retryAt = 0) {
  sources.set(source, { state, retryAt });
  const all = [...sources.values()];
  const down = all.filter((s) => s.state !== "live");
  const summary = down.length === 0 ? { state: "live" }
    : { state: down.some((s) => s.state === "refused") ? "refused" : "reconnecting",
        retryAt: Math.max(...down.map((s) => s.retryAt)) };
  for (const l of listeners) l(summary);
}

const MIN_RETRY_MS = 1000;  // never more often than once a second
const MAX_RETRY_MS = 15000;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Follows a server-sent event stream for as long as the page lives:
 * `onOpen()` on every (re)connection, `onEvent(type, data)` per event with
 * its data parsed as JSON. A dropped or refused stream is retried after 1 s,
 * doubling to 15 s while it keeps failing.
 */
export async function follow(path, name, onOpen, onEvent) {
  let retry = MIN_RETRY_MS;
  for (;;) {
    try {
      const res = await fetch(path, { headers: headers({ Accept: "text/event-stream" }), cache: "no-store" });
      if (!res.ok) throw await errorOf(res);
      report(name, "live");
      retry = MIN_RETRY_MS;
      onOpen();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          dispatch(block, onEvent);
        }
      }
      report(name, "reconnecting", Date.now() + retry);
    } catch (e) {
      report(name, e instanceof ApiError && e.status === 403 ? "refused" : "reconnecting", Date.now() + retry);
    }
    await sleep(retry);
    retry = Math.min(retry * 2, MAX_RETRY_MS);
  }
}

function dispatch(block, onEvent) {
  let type = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;  // a comment: the stream is live
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
  }
  if (data.length === 0) return;
  try {
    onEvent(type, JSON.parse(data.join("\n")));
  } catch {
    // an event we cannot read is skipped; the next full view repairs it
  }
}

/**
 * Calls `fetchOnce()` every `periodMs` (at least a second) for as long as the
 * page lives, reporting failures as `name`'s connection state and backing
 * off as follow() does.
 */
export async function poll(name, periodMs, fetchOnce) {
  let retry = MIN_RETRY_MS;
  for (;;) {
    let wait = Math.max(periodMs, MIN_RETRY_MS);
    try {
      await fetchOnce();
      report(name, "live");
      retry = MIN_RETRY_MS;
    } catch (e) {
      report(name, e instanceof ApiError && e.status === 403 ? "refused" : "reconnecting", Date.now() + retry);
      wait = retry;
      retry = Math.min(retry * 2, MAX_RETRY_MS);
    }
    await sleep(wait);
  }
}
