// RideFlow's live dashboard: plain ES module, no build step, no network beyond this server.
// The ADMIN token lives in sessionStorage; every data call sends it; the map is fed by the
// admin WebSocket (`subscribe.city` with `snapshot: true`).
const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem("rf.token"),
  city: sessionStorage.getItem("rf.city") || "blr",
  area: null, drivers: [], orders: [], restaurants: [], search: null, hits: new Set(),
  firstDrawn: false, statuses: new Map(), queuedAt: new Map(), assignMs: [],
  outcomes: { ACCEPTED: 0, REJECTED: 0, LAPSED: 0, WITHDRAWN: 0 },
  series: { match: [], assign: [], online: [] }, recent: [],
};

// -- HTTP ------------------------------------------------------------------------------------
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const started = performance.now();
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  return { status: r.status, ok: r.ok, data, ms: performance.now() - started };
}
const problem = (r) => (r.data && r.data.detail) || `HTTP ${r.status}`;

// -- login -----------------------------------------------------------------------------------
$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  performance.mark("rf-login-submit");
  const form = new FormData(ev.target);
  const body = new URLSearchParams({ username: form.get("username"), password: form.get("password") });
  const r = await fetch("/v1/auth/token", { method: "POST", body });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) { $("login-error").textContent = data.detail || `sign-in failed (${r.status})`; return; }
  state.token = data.access_token;
  state.city = String(form.get("city") || "blr");
  sessionStorage.setItem("rf.token", state.token);
  sessionStorage.setItem("rf.city", state.city);
  start();
});

function start() {
  performance.mark("rf-login-done");
  $("login").hidden = true;
  $("app").hidden = false;
  $("who").textContent = `city ${state.city}`;
  connect();
  loadRestaurants();
  refreshLeaderboard();
  setInterval(refreshLeaderboard, 5000);
  setInterval(sampleKpis, 2000);
  $("explorer-body").value = JSON.stringify(demoAssign(), null, 2);
}

// -- the socket --------------------------------------------------------------------------------
let socket = null;
function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
  socket = new WebSocket(url, ["rideflow.v1", `bearer.${state.token}`]);
  socket.onopen = () => {
    $("map-status").textContent = "live";
    socket.send(JSON.stringify({ type: "subscribe.city", id: "city", data: { city: state.city, snapshot: true } }));
  };
  socket.onmessage = (m) => onMessage(JSON.parse(m.data));
  socket.onclose = (ev) => {
    $("map-status").textContent = `socket closed (${ev.code}${ev.reason ? ": " + ev.reason : ""}); reconnecting`;
    if (ev.code === 4401) { sessionStorage.removeItem("rf.token"); location.reload(); return; }
    setTimeout(connect, 1000);
  };
}

function onMessage(msg) {
  if (msg.type === "ping") { socket.send(JSON.stringify({ type: "pong", id: msg.id, data: msg.data || {} })); return; }
  if (msg.type === "drivers.snapshot") { onSnapshot(msg.data); return; }
  if (msg.type === "event") { onEvent(msg.data); return; }
  if (msg.type === "error") { $("map-status").textContent = `error: ${msg.data.detail}`; }
}

function onSnapshot(data) {
  state.area = data.area;
  state.drivers = data.drivers;
  state.orders = data.orders || [];
  state.online = data.available + data.busy;
  state.lagMs = Date.now() - data.at_ms;
  $("map-status").textContent =
    `live · ${data.available} available, ${data.busy} busy, ${state.orders.length} open orders · ${new Date(data.at_ms).toLocaleTimeString()}`;
  requestAnimationFrame(draw);
}

function onEvent(e) {
  const id = e.order_id;
  if (!state.statuses.has(id)) {
    state.recent.unshift(id);
    state.recent.length = Math.min(state.recent.length, 8);
    renderRecent();
  }
  state.statuses.set(id, e.status);
  const at = Date.parse(e.at);
  if (e.status === "QUEUED") state.queuedAt.set(id, at);
  if (e.status === "ACCEPTED") {
    state.outcomes.ACCEPTED += 1;
    if (state.queuedAt.has(id)) state.assignMs.push(at - state.queuedAt.get(id));
  }
  if (e.outcome && e.outcome in state.outcomes) state.outcomes[e.outcome] += 1;
}

function renderRecent() {
  const box = $("recent-orders");
  box.replaceChildren(...state.recent.map((id) => {
    const a = document.createElement("a");
    a.textContent = id;
    a.addEventListener("click", () => { $("timeline-order").value = id; showTimeline(id); });
    return a;
  }));
}

// -- the map -----------------------------------------------------------------------------------
const canvas = $("map");
const ctx = canvas.getContext("2d");
const COLORS = { a: "#3fb950", b: "#f0883e", u: "#57606a" };

function projection() {
  const a = state.area || { lat: 12.9716, lng: 77.5946, radius_km: 30 };
  const kmLat = 111.32, kmLng = 111.32 * Math.cos((a.lat * Math.PI) / 180);
  const scale = Math.min(canvas.width, canvas.height) / (2.1 * a.radius_km);
  return {
    to: (lat, lng) => [canvas.width / 2 + (lng - a.lng) * kmLng * scale, canvas.height / 2 - (lat - a.lat) * kmLat * scale],
    from: (x, y) => [a.lat - (y - canvas.height / 2) / (kmLat * scale), a.lng + (x - canvas.width / 2) / (kmLng * scale)],
    pxPerKm: scale, area: a,
  };
}

function draw() {
  const p = projection();
  ctx.fillStyle = "#0b1016";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  // the service area and a 5 km grid: the city drawn without tiles
  const [cx, cy] = p.to(p.area.lat, p.area.lng);
  ctx.strokeStyle = "#1c2633";
  ctx.lineWidth = 1;
  for (let k = -p.area.radius_km; k <= p.area.radius_km; k += 5) {
    ctx.beginPath(); ctx.moveTo(cx + k * p.pxPerKm, 0); ctx.lineTo(cx + k * p.pxPerKm, canvas.height); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(0, cy + k * p.pxPerKm); ctx.lineTo(canvas.width, cy + k * p.pxPerKm); ctx.stroke();
  }
  ctx.strokeStyle = "#30363d";
  ctx.beginPath(); ctx.arc(cx, cy, p.area.radius_km * p.pxPerKm, 0, 2 * Math.PI); ctx.stroke();
  // drivers, batched by colour (one path each: 5,000 dots cost a few milliseconds)
  for (const s of ["u", "a", "b"]) {
    ctx.fillStyle = COLORS[s];
    ctx.beginPath();
    for (const d of state.drivers) {
      if (d[3] !== s) continue;
      const [x, y] = p.to(d[1], d[2]);
      ctx.rect(x - 1.5, y - 1.5, 3, 3);
    }
    ctx.fill();
  }
  ctx.fillStyle = "#bc8cff";
  for (const r of state.restaurants) {
    const [x, y] = p.to(r.location.lat, r.location.lng);
    ctx.fillRect(x - 3, y - 3, 6, 6);
  }
  ctx.strokeStyle = "#f85149";
  ctx.lineWidth = 1.5;
  for (const o of state.orders) {
    const [x, y] = p.to(o[1], o[2]);
    ctx.beginPath(); ctx.arc(x, y, 4, 0, 2 * Math.PI); ctx.stroke();
  }
  if (state.search) {
    const [x, y] = p.to(state.search.lat, state.search.lng);
    ctx.strokeStyle = "#58a6ff";
    ctx.beginPath(); ctx.arc(x, y, state.search.radius_km * p.pxPerKm, 0, 2 * Math.PI); ctx.stroke();
    ctx.fillStyle = "#58a6ff";
    ctx.fillRect(x - 3, y - 3, 6, 6);
    ctx.fillStyle = "#ffffff";
    for (const h of state.search.hits || []) {
      const [hx, hy] = p.to(h.lat, h.lng);
      ctx.beginPath(); ctx.arc(hx, hy, 4, 0, 2 * Math.PI); ctx.fill();
    }
  }
  canvas.dataset.drivers = String(state.drivers.length);
  if (!state.firstDrawn && state.drivers.length > 0) {
    state.firstDrawn = true;
    performance.mark("rf-map-drawn");
    const m = performance.measure("rf-first-render", "rf-login-done", "rf-map-drawn");
    canvas.dataset.firstRenderMs = m.duration.toFixed(1);
    if (performance.getEntriesByName("rf-login-submit").length) {
      const all = performance.measure("rf-submit-to-map", "rf-login-submit", "rf-map-drawn");
      canvas.dataset.submitToMapMs = all.duration.toFixed(1);
    }
  }
}

canvas.addEventListener("click", (ev) => {
  const rect = canvas.getBoundingClientRect();
  const x = ((ev.clientX - rect.left) * canvas.width) / rect.width;
  const y = ((ev.clientY - rect.top) * canvas.height) / rect.height;
  const [lat, lng] = projection().from(x, y);
  $("geo-point").value = `${lat.toFixed(5)},${lng.toFixed(5)}`;
});

async function loadRestaurants() {
  const r = await api("GET", `/v1/restaurants?city=${encodeURIComponent(state.city)}&limit=100`);
  if (r.ok) { state.restaurants = r.data.restaurants; requestAnimationFrame(draw); }
}

// -- GEOSEARCH -----------------------------------------------------------------------------------
$("geo-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const [lat, lng] = String(f.get("point")).split(",").map(Number);
  const q = new URLSearchParams({ city: state.city, lat, lng, radius_km: f.get("radius"), strategy: f.get("strategy") });
  const r = await api("GET", `/v1/admin/geosearch?${q}`);
  const out = $("geo-out");
  if (!r.ok) { out.textContent = `error: ${problem(r)}`; return; }
  const d = r.data;
  state.search = { lat, lng, radius_km: d.radius_km, hits: d.hits };
  const lines = [`$ ${d.command}`, `  ${d.explanation}`, ""];
  if (!d.hits.length) lines.push("(empty array) → no available driver within the radius");
  for (const h of d.hits) {
    lines.push(`${h.rank}) "driver:${h.driver_id}" ${(h.distance_m / 1000).toFixed(2)} km [${h.lng.toFixed(4)} ${h.lat.toFixed(4)}]` +
      (h.rating != null ? ` ★${h.rating}` : ""));
  }
  lines.push("", `${d.hits.length} hit(s) ranked by ${d.strategy} in ${d.took_ms} ms`);
  out.textContent = lines.join("\n");
  out.dataset.hits = String(d.hits.length);
  requestAnimationFrame(draw);
});

// -- timeline and console -------------------------------------------------------------------------
$("timeline-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  showTimeline($("timeline-order").value.trim());
});

async function orderEvents(id) {
  let r = await api("GET", `/v1/admin/orders/${encodeURIComponent(id)}/commands`);
  if (!r.ok) return { error: problem(r) };
  const console_ = r.data;
  const kind = console_.kind === "ride" ? "rides" : "deliveries";
  r = await api("GET", `/v1/${kind}/${encodeURIComponent(id)}/events`);
  if (!r.ok) return { error: problem(r) };
  return { events: r.data.events, console: console_ };
}

async function showTimeline(id) {
  const list = $("timeline");
  const got = await orderEvents(id);
  if (got.error) { list.replaceChildren(Object.assign(document.createElement("li"), { textContent: got.error })); return; }
  let prev = null;
  list.replaceChildren(...got.events.map((e) => {
    const li = document.createElement("li");
    const t = Date.parse(e.at);
    const gap = prev === null ? "start" : `+${(t - prev).toFixed(1)} ms`;
    // Date.parse keeps milliseconds; the microseconds are in the text itself
    const us = e.at.match(/\.(\d+)/);
    prev = t;
    li.innerHTML = `<b></b> <span class="gap"></span> <span class="who"></span>`;
    li.querySelector("b").textContent = e.status;
    li.querySelector(".gap").textContent = `${gap} (${e.at.slice(11, 19)}.${us ? us[1].slice(0, 3) : "000"})`;
    li.querySelector(".who").textContent =
      [e.driver_id && `driver ${e.driver_id}`, e.pickup_distance_m != null && `${e.pickup_distance_m.toFixed(0)} m away`, e.reason]
        .filter(Boolean).join(" · ");
    return li;
  }));
  list.dataset.steps = String(got.events.length);
  renderConsole(got.console);
}

function renderConsole(c) {
  const box = $("console");
  box.replaceChildren();
  for (const s of c.steps) {
    const head = document.createElement("div");
    head.className = "step";
    head.textContent = `// ${s.status} — ${s.script}: ${s.summary}`;
    box.append(head);
    for (const cmd of s.commands) {
      const line = document.createElement("div");
      line.className = "cmd";
      line.textContent = `$ ${cmd.text}`;
      line.title = cmd.explanation;
      const why = document.createElement("div");
      why.className = "why";
      why.textContent = cmd.explanation;
      box.append(line, why);
    }
  }
  box.dataset.steps = String(c.steps.length);
}

// -- race simulator -------------------------------------------------------------------------------
const item = (text, cls) => Object.assign(document.createElement("li"), { textContent: text, className: cls || "" });

$("race-unsafe").addEventListener("click", async () => {
  const out = $("race-unsafe-out");
  out.replaceChildren();
  const steps = [
    ["t=0 ms   order A: SMEMBERS available → D4 is free", ""],
    ["t=0 ms   order B: SMEMBERS available → D4 is free", ""],
    ["t=1 ms   order A: HSET D4 order A (no lock: nothing stops it)", ""],
    ["t=1 ms   order B: HSET D4 order B (overwrites A, or both believe they won)", ""],
    ["✗ Double assignment: D4 was given two orders. Read-then-write is not atomic.", "bad"],
    ["This is an explained simulation: RideFlow never runs without the lock.", ""],
  ];
  for (const [t, cls] of steps) { out.append(item(t, cls)); await new Promise((r) => setTimeout(r, 250)); }
});

$("race-safe").addEventListener("click", runRace);

function demoSpot() {
  // A spot 12-20 km from the centre in a random direction, where the demo's two drivers are
  // alone, so the race is theirs.
  const a = state.area || { lat: 12.9716, lng: 77.5946, radius_km: 30 };
  const km = Math.min(a.radius_km * 0.6, 12 + Math.random() * 8);
  const th = Math.random() * 2 * Math.PI;
  return { lat: a.lat + (km * Math.sin(th)) / 111.32, lng: a.lng + (km * Math.cos(th)) / (111.32 * Math.cos((a.lat * Math.PI) / 180)) };
}

async function runRace() {
  const out = $("race-safe-out");
  const verdict = $("race-verdict");
  out.replaceChildren();
  verdict.textContent = "";
  const tag = Math.random().toString(36).slice(2, 8);
  const spot = demoSpot();
  const near = { id: `demo-${tag}-near`, lat: spot.lat + 0.0004, lng: spot.lng };
  const next = { id: `demo-${tag}-next`, lat: spot.lat + 0.004, lng: spot.lng };
  for (const d of [near, next]) {
    const made = await api("POST", "/v1/drivers", { id: d.id, name: `Demo ${d.id.endsWith("near") ? "near" : "next"}`, rating: 4.8, vehicle: "Bike · demo", city: state.city });
    if (!made.ok) { out.append(item(`could not place ${d.id}: ${problem(made)}`, "bad")); return; }
    await api("PUT", `/v1/drivers/${d.id}/location`, { lat: d.lat, lng: d.lng });
    await api("PUT", `/v1/drivers/${d.id}/status`, { status: "online" });
  }
  out.append(item(`placed ${near.id} (~45 m from the restaurant) and ${next.id} (~450 m), both free`));
  out.append(item("firing two POST /v1/delivery/assign at once, both aiming at the nearest driver…"));
  const body = (o) => ({ order_id: `RACE-${tag}-${o}`, restaurant_id: "RST_DEMO", location: spot, strategy: "nearest", radius_km: 2, timeout_sec: 30 });
  const [a, b] = await Promise.all([api("POST", "/v1/delivery/assign", body("A")), api("POST", "/v1/delivery/assign", body("B"))]);
  const results = [["A", a], ["B", b]];
  for (const [o, r] of results) {
    out.append(item(r.ok
      ? `order ${o}: ${r.data.driver.id} at ${r.data.driver.distance_km} km, ${r.ms.toFixed(1)} ms`
      : `order ${o}: ${r.status} ${problem(r)}`));
  }
  const onNear = results.filter(([, r]) => r.ok && r.data.driver.id === near.id);
  const onNext = results.filter(([, r]) => r.ok && r.data.driver.id === next.id);
  const ok = onNear.length === 1 && onNext.length === 1;
  verdict.className = ok ? "good" : "bad";
  verdict.dataset.winners = String(onNear.length);
  verdict.textContent = ok
    ? `✓ One order wins: order ${onNear[0][0]} holds ${near.id} (SET NX took its lease); order ${onNext[0][0]} found it taken and moved to the next driver, ${next.id}.`
    : `unexpected: ${onNear.length} order(s) on ${near.id}, ${onNext.length} on ${next.id}`;
  // Leave nothing behind: the two orders cancelled, the two demo drivers offline (never offered
  // a real order).
  for (const [, r] of results) {
    if (r.ok) await api("POST", `/v1/deliveries/${r.data.delivery_id}/cancel`, {});
  }
  for (const d of [near, next]) await api("PUT", `/v1/drivers/${d.id}/status`, { status: "offline" });
  out.append(item("cleaned up: both orders cancelled, both demo drivers offline"));
  const winner = onNear[0] && onNear[0][1].data.delivery_id;
  if (winner) { $("timeline-order").value = winner; showTimeline(winner); }
}

// -- API explorer ---------------------------------------------------------------------------------
function demoAssign() {
  // At the city's centre, where a city's drivers are (the race's demo spot is kept empty).
  const s = state.area || { lat: 12.9716, lng: 77.5946 };
  return { order_id: `ORD_${Math.floor(Math.random() * 1e6)}`, restaurant_id: "RST_441", location: { lat: +s.lat.toFixed(5), lng: +s.lng.toFixed(5) }, strategy: "nearest", radius_km: 5, timeout_sec: 30 };
}
$("explorer-send").addEventListener("click", async () => {
  const out = $("explorer-out");
  let body;
  try { body = JSON.parse($("explorer-body").value); } catch (e) { out.textContent = `not JSON: ${e.message}`; return; }
  const r = await api("POST", "/v1/delivery/assign", body);
  out.textContent = `${r.status} · ${r.ms.toFixed(1)} ms\n${JSON.stringify(r.data, null, 2)}`;
});

// -- KPIs -----------------------------------------------------------------------------------------
function spark(id, values, color) {
  const c = $(id), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  if (values.length < 2) return;
  const max = Math.max(...values, 1e-9), min = Math.min(...values, 0);
  g.strokeStyle = color;
  g.beginPath();
  values.forEach((v, i) => {
    const x = (i * c.width) / (values.length - 1), y = c.height - 2 - ((v - min) / (max - min || 1)) * (c.height - 4);
    if (i) g.lineTo(x, y); else g.moveTo(x, y);
  });
  g.stroke();
}
const push = (arr, v) => { arr.push(v); if (arr.length > 60) arr.shift(); };
const median = (xs) => { if (!xs.length) return null; const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

function sampleKpis() {
  let accepted = 0, failed = 0;
  for (const s of state.statuses.values()) {
    if (["ACCEPTED", "DRIVER_ARRIVING", "PICKED_UP", "COMPLETED", "DELIVERED"].includes(s)) accepted += 1;
    if (s === "NO_DRIVER_FOUND") failed += 1;
  }
  const rate = accepted + failed ? accepted / (accepted + failed) : null;
  $("kpi-match").textContent = rate === null ? "–" : `${(rate * 100).toFixed(1)} %`;
  if (rate !== null) push(state.series.match, rate);
  const p50 = median(state.assignMs.slice(-500));
  $("kpi-assign").textContent = p50 === null ? "–" : `${p50.toFixed(0)} ms`;
  if (p50 !== null) push(state.series.assign, p50);
  if (state.online !== undefined) { $("kpi-online").textContent = String(state.online); push(state.series.online, state.online); }
  spark("chart-match", state.series.match, "#3fb950");
  spark("chart-assign", state.series.assign, "#58a6ff");
  spark("chart-online", state.series.online, "#f0883e");
  const c = $("chart-offers"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const entries = Object.entries(state.outcomes), max = Math.max(1, ...entries.map(([, v]) => v));
  const colors = { ACCEPTED: "#3fb950", REJECTED: "#f85149", LAPSED: "#d29922", WITHDRAWN: "#8b98a5" };
  entries.forEach(([k, v], i) => {
    const w = (v / max) * (c.width - 10);
    g.fillStyle = colors[k];
    g.fillRect(0, i * 17 + 2, Math.max(w, 1), 13);
  });
  $("kpi-offers").textContent = entries.map(([k, v]) => `${k.toLowerCase()} ${v}`).join(" · ");
}

async function refreshLeaderboard() {
  const r = await api("GET", `/v1/admin/leaderboard?city=${encodeURIComponent(state.city)}&limit=10`);
  if (!r.ok) return;
  const list = $("leaderboard");
  list.replaceChildren(...r.data.drivers.map((d) => item(`${d.driver_id} · ${d.trips} trip${d.trips === 1 ? "" : "s"}`)));
  if (!r.data.drivers.length) list.replaceChildren(item("no trip completed yet today"));
}

if (state.token) start();
