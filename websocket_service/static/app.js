// The order desk: catalogue → order → live status over the WebSocket, with the status API as fallback.
// The order API is reached same-origin under /api (the service forwards it to the Functions host), signed
// in with the token signin.js holds.
"use strict";

const API = "/api";
const TERMINAL = new Set(["Completed", "Rejected", "Failed"]);
const SKU_ORDER = new Intl.Collator(undefined, { numeric: true }); // SKU-2 before SKU-10
const POLL_MS = 2000;
// While the socket is up, a push could still go missing (an instance restarting at the wrong moment):
// the status is read again now and then as a last resort, until it is final.
const SLOW_POLL_MS = 20000;

const $ = (sel, root = document) => root.querySelector(sel);
const products = new Map();

function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return "k-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
}

function money(amount, currency) {
  const value = Number(amount);
  if (!Number.isFinite(value)) return `${amount} ${currency}`;
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(value);
  } catch {
    return `${value.toFixed(2)} ${currency}`;
  }
}

function showError(message, details = []) {
  const box = $("#form-error");
  box.replaceChildren(document.createTextNode(message));
  if (details.length) {
    const list = document.createElement("ul");
    for (const d of details) {
      const li = document.createElement("li");
      li.textContent = d;
      list.append(li);
    }
    box.append(list);
  }
  box.hidden = false;
}

function clearError() {
  $("#form-error").hidden = true;
}

async function problemText(response) {
  try {
    const body = await response.json();
    const details = (body.errors || []).map((e) =>
      typeof e === "string" ? e : [e.field || e.pointer || e.name, e.message || e.detail].filter(Boolean).join(": "));
    return [body.detail || body.title || `The order API answered ${response.status}.`, details];
  } catch {
    return [`The order API answered ${response.status}.`, []];
  }
}

async function loadProducts() {
  const state = $("#catalog-state");
  try {
    const response = await fetch(`${API}/products`, { headers: { Accept: "application/json", ...SignIn.headers() } });
    if (!response.ok) throw new Error((await problemText(response))[0]);
    const list = (await response.json()).sort((a, b) => SKU_ORDER.compare(a.sku, b.sku));
    const body = $("#products tbody");
    // A refresh (after an order finished) keeps what the person has typed in so far.
    const typed = new Map(selectedItems().map((i) => [i.sku, String(i.quantity)]));
    body.replaceChildren();
    for (const p of list) {
      products.set(p.sku, p);
      const row = document.createElement("tr");
      if (p.stock <= 0) row.className = "soldout";
      const name = document.createElement("td");
      name.innerHTML = `<span class="name"></span><span class="sku"></span>`;
      name.querySelector(".name").textContent = p.name;
      name.querySelector(".sku").textContent = p.sku;
      const price = document.createElement("td");
      price.className = "num";
      price.textContent = money(p.unitPrice, p.currency);
      const stock = document.createElement("td");
      stock.className = "num";
      stock.textContent = p.stock > 0 ? String(p.stock) : "Sold out";
      const qtyCell = document.createElement("td");
      qtyCell.className = "num";
      const qty = document.createElement("input");
      Object.assign(qty, { type: "number", min: "0", max: String(Math.max(0, Math.min(p.stock, 1000))),
                           value: p.stock > 0 ? typed.get(p.sku) ?? "0" : "0",
                           step: "1", inputMode: "numeric", name: `qty-${p.sku}` });
      qty.dataset.sku = p.sku;
      qty.disabled = p.stock <= 0;
      qty.setAttribute("aria-label", `Quantity of ${p.name}`);
      qty.addEventListener("input", updateSummary);
      qtyCell.append(qty);
      row.append(name, price, stock, qtyCell);
      body.append(row);
    }
    state.hidden = true;
    $("#products").hidden = false;
  } catch (err) {
    state.textContent = `Products could not be loaded: ${err.message} Is the order API running? Reload to try again.`;
    state.classList.add("error");
  } finally {
    $("#catalog").setAttribute("aria-busy", "false");
  }
}

function selectedItems() {
  const items = [];
  for (const input of document.querySelectorAll("#products input[type=number]")) {
    const quantity = Number.parseInt(input.value, 10);
    if (quantity > 0) items.push({ sku: input.dataset.sku, quantity });
  }
  return items;
}

function updateSummary() {
  const items = selectedItems();
  const summary = $("#summary");
  if (!items.length) {
    summary.textContent = "Nothing selected yet.";
    $("#place").disabled = true;
    return;
  }
  const currencies = new Set(items.map((i) => products.get(i.sku).currency));
  const count = items.reduce((n, i) => n + i.quantity, 0);
  if (currencies.size > 1) {
    summary.textContent = `${count} item(s) in more than one currency: one order takes one currency.`;
    $("#place").disabled = true;
    return;
  }
  const [currency] = currencies;
  const total = items.reduce((sum, i) => sum + Number(products.get(i.sku).unitPrice) * i.quantity, 0);
  summary.textContent = `${count} item(s), about ${money(total, currency)}`;
  $("#place").disabled = false;
}

async function placeOrder(event) {
  event.preventDefault();
  clearError();
  const customer = $("#customer");
  if (!SignIn.required && !customer.checkValidity()) {
    showError("The customer id must be 1–64 letters, digits, dots, dashes or underscores.");
    customer.focus();
    return;
  }
  const items = selectedItems();
  if (!items.length) return;
  const currency = products.get(items[0].sku).currency;
  const button = $("#place");
  button.disabled = true;
  button.textContent = "Placing…";
  try {
    const response = await fetch(`${API}/orders`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", "Idempotency-Key": newKey(),
                 ...SignIn.headers() },
      // Signed in, the token says who the customer is.
      body: JSON.stringify(SignIn.required ? { currency, items } : { customerId: customer.value, currency, items }),
    });
    if (response.status !== 202) {
      const [message, details] = await problemText(response);
      showError(message, details);
      return;
    }
    const accepted = await response.json();
    track(accepted, items);
    for (const input of document.querySelectorAll("#products input[type=number]")) input.value = "0";
    updateSummary();
  } catch (err) {
    showError(`The order could not be sent: ${err.message}. Check your connection and try again.`);
  } finally {
    button.textContent = "Place order";
    updateSummary();
  }
}

function track(accepted, items) {
  $("#no-orders").hidden = true;
  const card = $("#order-template").content.firstElementChild.cloneNode(true);
  $(".cid", card).textContent = accepted.correlationId;
  $(".items", card).textContent = items.map((i) => `${i.quantity} × ${products.get(i.sku).name}`).join(", ");
  $("#orders").prepend(card);
  const tracker = new OrderTracker(accepted, card);
  $(".check-again", card).addEventListener("click", () => tracker.checkAgain());
  tracker.start();
}

class OrderTracker {
  constructor(accepted, card) {
    this.id = accepted.correlationId;
    // The statusUrl carries the intake's receipt: its read never says "not found" before processing.
    this.statusUrl = accepted.statusUrl || `${API}/orders/${encodeURIComponent(this.id)}`;
    this.token = accepted.notifyToken;
    const base = accepted.notifyUrl || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    const url = new URL(base, location.href);
    url.searchParams.set("correlationId", this.id);
    url.searchParams.set("token", this.token);
    this.wsUrl = url.toString();
    this.card = card;
    this.done = false;
    this.socket = null;
    this.pollTimer = null;
    this.retry = 0;
    this.render({ status: accepted.status || "Accepted" });
  }

  start() {
    this.connect();
    this.slowTimer = setInterval(() => {
      if (this.done) clearInterval(this.slowTimer);
      else if (this.pollTimer === null) this.poll();
    }, SLOW_POLL_MS);
  }

  // A Failed order may be replayed by an operator as a new attempt: following it again reads the current
  // status (Accepted with the next attempt, or already its outcome) and subscribes for what follows.
  checkAgain() {
    $(".retry-note", this.card).hidden = true;
    this.done = false;
    this.retry = 0;
    this.channel("polling", "Checking");
    this.start();
    this.poll();
  }

  connect() {
    if (this.done) return;
    let opened = false;
    let socket;
    try {
      socket = new WebSocket(this.wsUrl);
    } catch {
      this.fallBack();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      opened = true;
      this.retry = 0;
      this.stopPolling();
      this.channel("live", "Live");
    });
    socket.addEventListener("message", (msg) => {
      let frame;
      try { frame = JSON.parse(msg.data); } catch { return; }
      if (frame.type === "status" && frame.correlationId === this.id) this.render(frame);
    });
    socket.addEventListener("close", (ev) => {
      this.socket = null;
      if (this.done) return;
      // 4xx at the handshake (bad or expired token) shows up as a close before open: polling still works.
      this.fallBack();
      const delay = Math.min(10000, 1000 * 2 ** this.retry++);
      if (opened || this.retry < 6) setTimeout(() => this.connect(), delay);
    });
  }

  fallBack() {
    if (this.done) return;
    this.channel("polling", "Checking every few seconds");
    if (this.pollTimer === null) {
      this.poll();
      this.pollTimer = setInterval(() => this.poll(), POLL_MS);
    }
  }

  stopPolling() {
    if (this.pollTimer !== null) clearInterval(this.pollTimer);
    this.pollTimer = null;
  }

  async poll() {
    try {
      const response = await fetch(this.statusUrl, { headers: { Accept: "application/json", ...SignIn.headers() } });
      if (response.ok) this.render(await response.json());
    } catch {
      // Offline for a moment: the next tick tries again.
    }
  }

  channel(mode, text) {
    const el = $(".channel", this.card);
    el.dataset.mode = mode;
    el.textContent = text;
  }

  render(status) {
    if (this.done) return;
    const badge = $(".badge", this.card);
    badge.dataset.status = status.status;
    badge.textContent = status.status;
    if (status.orderId !== undefined && status.orderId !== null) $(".order-id", this.card).textContent = String(status.orderId);
    if (status.total) $(".total", this.card).textContent = money(status.total, status.currency || "");
    const reason = $(".reason", this.card);
    reason.textContent = status.reason || "";
    reason.hidden = !status.reason;
    badge.title = status.attempt > 1 ? `attempt ${status.attempt}` : "";
    if (TERMINAL.has(status.status)) {
      if (status.status === "Failed") $(".retry-note", this.card).hidden = false;
      this.done = true;
      if (status.status === "Completed") loadProducts().then(updateSummary); // stock has changed
      this.stopPolling();
      this.channel("done", "Final");
      if (this.socket) this.socket.close(1000, "order finished");
      this.showTimeline();
    }
  }

  // Locally the services write their spans to files, which the WebSocket service reads back: the order's
  // journey from the request to this page. Spans reach the files about half a second after each step. An
  // order that was finished before the socket subscribed has no push: its timeline ends with processing.
  async showTimeline(tries = 8) {
    let trace;
    try {
      const url = `/traces/${encodeURIComponent(this.id)}?token=${encodeURIComponent(this.token)}`;
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (!response.ok) return; // no local trace files (Azure keeps traces in Application Insights)
      trace = await response.json();
    } catch {
      return;
    }
    // Each service exports on its own: wait until every phase can be told (a push, and what led to it).
    const whole = ["intake", "queue", "processing", "toSocket"].every((phase) => phase in trace.phases);
    if (!whole && tries > 1) {
      setTimeout(() => this.showTimeline(tries - 1), 750);
      if (!trace.spans.length) return;
    }
    const names = { intake: "in intake", queue: "in the queue", processing: "in processing", toSocket: "to the socket" };
    $(".timeline .phases", this.card).textContent = Object.entries(trace.phases)
      .map(([key, ms]) => `${names[key]} ${ms.toFixed(1)} ms`).join(" · ");
    const total = Math.max(1, ...trace.spans.map((span) => span.offsetMs + span.durationMs));
    const body = $(".timeline tbody", this.card);
    body.replaceChildren(...trace.spans.map((span) => {
      const row = document.createElement("tr");
      row.dataset.status = span.status;
      const cells = [span.service, "\u00a0\u00a0".repeat(span.depth) + span.name, span.offsetMs.toFixed(1),
                     span.durationMs.toFixed(1)];
      for (const [index, text] of cells.entries()) {
        const cell = document.createElement("td");
        cell.textContent = text;
        if (index >= 2) cell.className = "num";
        row.append(cell);
      }
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.marginLeft = `${(span.offsetMs / total) * 100}%`;
      bar.style.width = `${Math.max(0.5, (span.durationMs / total) * 100)}%`;
      const when = document.createElement("td");
      when.className = "when";
      when.append(bar);
      row.append(when);
      return row;
    }));
    $(".timeline", this.card).hidden = false;
  }
}

function showAccount(state) {
  const account = $("#account");
  account.hidden = false;
  $("#customer-field").hidden = true;
  if (state.session) {
    $("#account-name").textContent = `Signed in as ${state.session.name}`;
    $("#sign-in").hidden = true;
    $("#sign-out").hidden = false;
    return true;
  }
  $("#account-name").textContent = "Sign in to see the catalogue and place orders.";
  $("#catalog-state").textContent = "Sign in first.";
  return false;
}

document.addEventListener("DOMContentLoaded", async () => {
  $("#order-form").addEventListener("submit", placeOrder);
  $("#sign-in").addEventListener("click", () => SignIn.start().catch((err) => showError(`Sign-in failed: ${err.message}`)));
  $("#sign-out").addEventListener("click", () => SignIn.signOut());
  try {
    const state = await SignIn.init();
    if (state.required && !showAccount(state)) return;
  } catch (err) {
    showError(`Sign-in failed: ${err.message}. Try signing in again.`);
    showAccount({});
    return;
  }
  loadProducts();
});
