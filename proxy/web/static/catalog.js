// The catalog page: the products, the catalog's state and its recent versions, read from this
// proxy's API and kept current from its event stream without a reload.
//
// Loaded as a file, never inline (the page's Content-Security-Policy allows scripts from this
// origin only), and every node is built with textContent: data never becomes markup.
// The API key lives in one variable of this closure: never in storage, a cookie or the URL.
// EventSource cannot send an Authorization header, so the stream is read with fetch() and
// parsed here (the "text/event-stream" format of the HTML standard).
"use strict";

(() => {
  const REQUEST_TIMEOUT_MS = 10000;
  // The stream sends a keep-alive comment at least every 300 s (PROXY_STREAM_KEEPALIVE is at
  // most that): longer silence means the connection is dead.
  const STREAM_IDLE_MS = 330000;
  // Until the stream's "retry:" field says otherwise.
  const RETRY_FIRST_MS = 3000;
  const RETRY_MAX_MS = 30000;
  // A catalog turns stale with no event (the upstream is failing): look again this often.
  const RECHECK_MS = 60000;
  const NONE = "–";

  const byId = (id) => document.getElementById(id);
  const ui = {
    keyForm: byId("key-form"),
    keyInput: byId("key-input"),
    keyMessage: byId("key-message"),
    status: byId("status"),
    error: byId("error"),
    catalogSection: byId("catalog-section"),
    filter: byId("filter"),
    count: byId("count"),
    live: byId("live"),
    rows: byId("product-rows"),
    versionsSection: byId("versions-section"),
    versions: byId("versions"),
  };

  let apiKey = null;
  let keyNeeded = false;
  // The catalog block of the last listing, and when it arrived (the age ticks on from there).
  let catalogState = null;
  let catalogStateAt = 0;
  // The version on screen, to skip reloading for an event about it (the stream's first).
  let shownEpoch = null;
  let shownVersion = null;
  // Where a resumed stream starts: the last event's id and the epoch it counts in.
  let lastEventId = null;
  let lastEpoch = null;
  let retryFirstMs = RETRY_FIRST_MS;
  let stream = null;
  let refreshing = null;
  let refreshAgain = false;

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function requestHeaders(accept) {
    const headers = new Headers({ Accept: accept });
    if (apiKey !== null) headers.set("Authorization", `Bearer ${apiKey}`);
    return headers;
  }

  async function httpError(response) {
    let message = `${response.status} ${response.statusText}`.trim();
    try {
      const body = await response.json();
      if (body && body.error && typeof body.error.message === "string") {
        message = `${response.status}: ${body.error.message}`;
      }
    } catch {
      // Not JSON: the status line says enough.
    }
    return new HttpError(response.status, message);
  }

  async function getJson(path) {
    let response;
    try {
      response = await fetch(path, {
        headers: requestHeaders("application/json"),
        // Never from the browser's cache: it would hide the change just announced, and a
        // listing's catalog age would be that of when it was first received.
        cache: "no-store",
        credentials: "omit",
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (error) {
      if (error.name === "TimeoutError") {
        throw new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`);
      }
      throw error;
    }
    if (!response.ok) throw await httpError(response);
    return response.json();
  }

  // -- the key ----------------------------------------------------------------------------------

  function askForKey() {
    keyNeeded = true;
    stopStream();
    ui.keyMessage.textContent =
      apiKey === null
        ? "This proxy requires an API key. Enter one to see the catalog."
        : "That API key was not accepted (401). Enter a valid API key.";
    ui.keyForm.hidden = false;
    ui.catalogSection.hidden = true;
    ui.versionsSection.hidden = true;
    ui.error.hidden = true;
    ui.status.textContent = "An API key is required.";
    ui.keyInput.focus();
  }

  ui.keyForm.addEventListener("submit", (event) => {
    // Handled here; the page's CSP (form-action 'none') would refuse a real submission.
    event.preventDefault();
    const key = ui.keyInput.value.trim();
    ui.keyInput.value = "";
    if (!key) return;
    apiKey = key;
    keyNeeded = false;
    ui.keyForm.hidden = true;
    ui.status.textContent = "Loading…";
    begin();
  });

  // -- loading ----------------------------------------------------------------------------------

  function showFailure(error) {
    if (error instanceof HttpError && error.status === 401) {
      askForKey();
      return;
    }
    ui.error.textContent = `Could not load the catalog: ${error.message}`;
    ui.error.hidden = false;
    if (catalogState === null) ui.status.textContent = "No catalog to show yet.";
  }

  // The versions, or why they are missing: the products are worth showing without them.
  async function getVersions() {
    try {
      return { history: await getJson("/api/v1/catalog/versions"), error: null };
    } catch (error) {
      if (error instanceof HttpError && error.status === 401) throw error;
      // 404: a proxy that keeps no history; nothing to say about it.
      const missing = error instanceof HttpError && error.status === 404;
      return { history: null, error: missing ? null : error.message };
    }
  }

  async function loadAll() {
    let listing;
    let versionsAnswer;
    try {
      [listing, versionsAnswer] = await Promise.all([
        getJson("/api/v1/products"),
        getVersions(),
      ]);
    } catch (error) {
      showFailure(error);
      return;
    }
    const history = versionsAnswer.history;
    let changes = null;
    let changesError = null;
    const versions = history ? history.versions : [];
    if (versions.length > 1) {
      try {
        const query = new URLSearchParams({ since: String(versions[1].version) });
        if (history.epoch) query.set("epoch", history.epoch);
        changes = await getJson(`/api/v1/changes?${query}`);
      } catch (error) {
        if (error instanceof HttpError && error.status === 401) {
          askForKey();
          return;
        }
        changesError = error.message;
      }
    }
    ui.error.hidden = true;
    renderProducts(listing);
    renderVersions(history, versionsAnswer.error, changes, changesError, listing.products);
    shownEpoch = history ? history.epoch : null;
    shownVersion = history ? history.current : null;
  }

  // Runs loadAll, one at a time; a refresh asked for meanwhile runs once after it.
  function refresh() {
    if (refreshing !== null) {
      refreshAgain = true;
      return refreshing;
    }
    refreshing = (async () => {
      try {
        do {
          refreshAgain = false;
          await loadAll();
        } while (refreshAgain && !keyNeeded);
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  async function begin() {
    stopStream();
    await refresh();
    if (!keyNeeded) startStream();
  }

  // -- products ---------------------------------------------------------------------------------

  function money(totals) {
    const cell = el("td", null, "money");
    const currencies = Object.keys(totals || {}).sort();
    if (currencies.length === 0) cell.textContent = NONE;
    for (const currency of currencies) {
      cell.append(el("div", `${totals[currency]} ${currency}`));
    }
    return cell;
  }

  function charges(lines) {
    return (lines || []).map((line) => `${line.name}: ${line.amount} ${line.currency}`).join("\n");
  }

  function number(value) {
    return el("td", value === null || value === undefined ? NONE : value, "num");
  }

  function productRow(product) {
    const row = el("tr");
    row.dataset.id = String(product.id);
    row.dataset.search = [product.name, product.material, product.category]
      .filter((text) => typeof text === "string")
      .join(" ")
      .toLowerCase();
    const order = product.order || {};
    const oneTime = money(product.one_time_total);
    oneTime.title = charges(product.one_time);
    const recurring = money(product.recurring_total);
    recurring.title = charges(product.recurring);
    row.append(
      number(product.id),
      el("td", product.name ?? NONE, "name"),
      el("td", product.material ?? NONE),
      el("td", product.category ?? NONE),
      oneTime,
      recurring,
      number(order.min),
      number(order.max),
      number(order.max_per_customer),
    );
    return row;
  }

  function applyFilter() {
    const words = ui.filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const row of ui.rows.children) {
      const visible = words.every((word) => row.dataset.search.includes(word));
      row.hidden = !visible;
      if (visible) shown += 1;
    }
    const total = ui.rows.children.length;
    ui.count.textContent =
      shown === total ? `${total} products` : `${shown} of ${total} products`;
  }

  function renderProducts(listing) {
    ui.rows.replaceChildren(...listing.products.map(productRow));
    applyFilter();
    catalogState = listing.catalog || null;
    catalogStateAt = Date.now();
    renderState();
    ui.catalogSection.hidden = false;
  }

  // A timestamp from the API in the reader's locale (as sent if it does not parse).
  function localTime(text) {
    const moment = new Date(text);
    return Number.isNaN(moment.getTime()) ? String(text) : moment.toLocaleString();
  }

  function duration(seconds) {
    if (seconds < 60) return `${seconds} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
    return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
  }

  function renderState() {
    if (catalogState === null) return;
    const age = catalogState.age_seconds + Math.floor((Date.now() - catalogStateAt) / 1000);
    const stale = Boolean(catalogState.stale);
    const state = el("span", stale ? "stale" : "fresh", stale ? "state-stale" : "state-fresh");
    state.id = "catalog-state";
    const when = localTime(catalogState.fetched_at);
    ui.status.replaceChildren(
      "Catalog ",
      state,
      `: fetched from 1NCE ${when}, ${duration(Math.max(age, 0))} ago.`,
    );
  }

  ui.filter.addEventListener("input", applyFilter);
  window.setInterval(renderState, 1000);
  window.setInterval(() => {
    if (!keyNeeded && document.visibilityState === "visible") refresh();
  }, RECHECK_MS);

  // -- versions ---------------------------------------------------------------------------------

  function valueText(value) {
    if (value === null || value === undefined) return "(none)";
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function summaryText(summary) {
    if (!summary) return "";
    const parts = [];
    if (summary.added) parts.push(`${summary.added} added`);
    if (summary.removed) parts.push(`${summary.removed} removed`);
    if (summary.changed) parts.push(`${summary.changed} changed`);
    return parts.length ? parts.join(", ") : "no product changed";
  }

  function productName(product) {
    return `${product.name ?? "(unnamed)"} (${product.id})`;
  }

  function changeList(changes, products) {
    const names = new Map(products.map((product) => [product.id, product]));
    const list = el("ul", null, "changes");
    for (const product of changes.added || []) {
      list.append(el("li", `added: ${productName(product)}`));
    }
    for (const product of changes.removed || []) {
      list.append(el("li", `removed: ${productName(product)}`));
    }
    for (const product of changes.changed || []) {
      const known = names.get(product.id);
      const name = known ? productName(known) : `product ${product.id}`;
      for (const change of product.changes || []) {
        const item = el("li", `${name}: `);
        item.append(
          el("code", change.field),
          ` ${valueText(change.before)} → ${valueText(change.after)}`,
        );
        list.append(item);
      }
    }
    return list;
  }

  function renderVersions(history, historyError, changes, changesError, products) {
    if (history === null || history.versions.length === 0) {
      const note = historyError === null ? [] : [el("li", `Not available: ${historyError}`)];
      ui.versions.replaceChildren(...note);
      ui.versionsSection.hidden = note.length === 0;
      return;
    }
    const items = history.versions.map((version, index) => {
      const item = el("li");
      item.dataset.version = String(version.version);
      const title = el("strong", `Version ${version.version}`);
      if (version.version === history.current) title.append(" (current)");
      item.append(
        title,
        " ",
        el("span", `stored ${localTime(version.stored_at)}, ${version.products} products`, "meta"),
        el("div", summaryText(version.summary), "summary"),
      );
      if (index === 0 && changes !== null) item.append(changeList(changes, products));
      if (index === 0 && changesError !== null) {
        item.append(el("div", `What changed could not be loaded: ${changesError}`, "error"));
      }
      return item;
    });
    ui.versions.replaceChildren(...items);
    ui.versionsSection.hidden = false;
  }

  // -- the event stream -------------------------------------------------------------------------

  // Parses "text/event-stream" text as it arrives and calls onEvent(type, data) per event.
  class EventStreamParser {
    constructor(onEvent) {
      this.onEvent = onEvent;
      this.buffer = "";
      this.type = "";
      this.data = [];
      this.id = lastEventId;
    }

    push(text) {
      // A chunk may end between the CR and LF of one line break: keep that CR for the next.
      const joined = this.buffer + text;
      const held = joined.endsWith("\r") ? "\r" : "";
      const lines = (held ? joined.slice(0, -1) : joined).split(/\r\n|\r|\n/);
      this.buffer = lines.pop() + held;
      for (const line of lines) this.line(line);
    }

    line(line) {
      if (line === "") {
        this.dispatch();
        return;
      }
      if (line.startsWith(":")) return;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") this.type = value;
      else if (field === "data") this.data.push(value);
      else if (field === "id" && !value.includes("\0")) this.id = value;
      else if (field === "retry" && /^[0-9]+$/.test(value)) retryFirstMs = Number(value);
    }

    dispatch() {
      lastEventId = this.id;
      const type = this.type || "message";
      const data = this.data.join("\n");
      const had = this.data.length > 0;
      this.type = "";
      this.data = [];
      if (had) this.onEvent(type, data);
    }
  }

  // What the live line says: the stream's state, then the last version it brought.
  let liveState = "";
  let liveUpdate = "";

  function setLive(state, update = liveUpdate) {
    liveState = state;
    liveUpdate = update;
    ui.live.textContent = update ? `${state} ${update}` : state;
  }

  function onEvent(type, data) {
    if (type !== "catalog" && type !== "resync") return;
    let event = {};
    try {
      event = JSON.parse(data) || {};
    } catch {
      // The refresh below reads the catalog itself; the event only says when.
    }
    if (typeof event.epoch === "string" && event.epoch) lastEpoch = event.epoch;
    // The stream opens with the current version: no reload when that is on screen already.
    if (type === "catalog" && event.epoch === shownEpoch && event.version === shownVersion) {
      return;
    }
    const at = new Date().toLocaleTimeString();
    const what = Number.isInteger(event.version) ? `Version ${event.version}` : "An update";
    setLive(liveState, `${what} arrived ${at}.`);
    refresh();
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const timer = window.setTimeout(resolve, ms);
      signal.addEventListener(
        "abort",
        () => {
          window.clearTimeout(timer);
          resolve();
        },
        { once: true },
      );
    });
  }

  // One connection: returns when the server ends it, throws on an error or silence.
  async function readStream(stopped, opened) {
    const attempt = new AbortController();
    const abort = () => attempt.abort();
    stopped.addEventListener("abort", abort, { once: true });
    let idle = window.setTimeout(abort, STREAM_IDLE_MS);
    const headers = requestHeaders("text/event-stream");
    const query = new URLSearchParams();
    if (lastEventId !== null) {
      headers.set("Last-Event-ID", lastEventId);
      if (lastEpoch !== null) query.set("epoch", lastEpoch);
    }
    const url = query.size ? `/api/v1/events?${query}` : "/api/v1/events";
    try {
      const response = await fetch(url, {
        headers,
        cache: "no-store",
        credentials: "omit",
        signal: attempt.signal,
      });
      if (!response.ok) throw await httpError(response);
      const type = response.headers.get("Content-Type") || "";
      if (!type.startsWith("text/event-stream")) throw new Error(`not an event stream: ${type}`);
      opened();
      setLive("Live updates on.");
      const parser = new EventStreamParser(onEvent);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        window.clearTimeout(idle);
        idle = window.setTimeout(abort, STREAM_IDLE_MS);
        parser.push(value);
      }
    } finally {
      window.clearTimeout(idle);
      stopped.removeEventListener("abort", abort);
    }
  }

  // Keeps a stream open until stopped: reconnects after the stream's "retry" time, doubling
  // up to 30 s while attempts fail, and resumes after the last event seen.
  async function follow(stopped) {
    let failures = 0;
    const opened = () => {
      failures = 0;
    };
    while (!stopped.aborted) {
      let reason = "the connection ended";
      try {
        await readStream(stopped, opened);
      } catch (error) {
        if (stopped.aborted) return;
        if (error instanceof HttpError && error.status === 401) {
          askForKey();
          return;
        }
        reason = error.name === "AbortError" ? "no data for too long" : error.message;
      }
      if (stopped.aborted) return;
      const delay = Math.min(retryFirstMs * 2 ** failures, RETRY_MAX_MS);
      failures = Math.min(failures + 1, 10);
      const seconds = Math.round(delay / 1000);
      setLive(`Live updates interrupted (${reason}); reconnecting in ${seconds} s.`);
      await sleep(delay, stopped);
    }
  }

  function startStream() {
    stopStream();
    stream = new AbortController();
    follow(stream.signal);
  }

  function stopStream() {
    if (stream !== null) stream.abort();
    stream = null;
  }

  begin();
})();
