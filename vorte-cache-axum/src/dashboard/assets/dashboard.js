// vorte-cache dashboard: renders the snapshots that the server sends each second on `events`
// (a server-sent event stream). Every figure is computed on the server; this script formats
// them and keeps the last 2 minutes of hit rates for the chart.
"use strict";

(function () {
  const HISTORY = 120; // points in the chart: one per snapshot, so 2 minutes
  const SVGNS = "http://www.w3.org/2000/svg";
  const COLORS = { l1: "var(--l1)", l2: "var(--l2)", l3: "var(--l3)", l4: "var(--l4)", all: "var(--all)" };
  const history = []; // [{at_ms, all, l1, l2, ...}] with rates in 0..1 or null

  const $ = (sel, root) => (root || document).querySelector(sel);
  const byTestId = (id, root) => $('[data-testid="' + id + '"]', root);

  // ----- formatting ---------------------------------------------------------------------------
  function count(n) {
    if (n === null || n === undefined) return "–";
    const abs = Math.abs(n);
    if (abs < 1000) return String(n);
    const units = [["T", 1e12], ["G", 1e9], ["M", 1e6], ["k", 1e3]];
    for (const [unit, size] of units) {
      if (abs >= size) {
        const v = n / size;
        return (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + " " + unit;
      }
    }
    return String(n);
  }
  function ms(v) {
    if (v === null || v === undefined) return "–";
    if (v < 1) return Math.round(v * 1000) + " µs";
    if (v < 1000) return (v < 10 ? v.toFixed(1) : v.toFixed(0)) + " ms";
    return (v / 1000).toFixed(v < 10000 ? 1 : 0) + " s";
  }
  function bytes(b) {
    if (b === null || b === undefined) return "–";
    const units = [["GB", 1 << 30], ["MB", 1 << 20], ["kB", 1 << 10]];
    for (const [unit, size] of units) {
      if (b >= size) return (b / size).toFixed(b / size >= 100 ? 0 : 1) + " " + unit;
    }
    return b + " B";
  }
  function pct(r) {
    if (r === null || r === undefined) return "–";
    return (r * 100).toFixed(r === 1 ? 0 : 1) + " %";
  }
  function clock(atMs) {
    const d = new Date(atMs);
    return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }

  // Sets a number: formatted text, the exact value in data-value and in the tooltip.
  function setNumber(el, value, text) {
    if (!el) return;
    const shown = text === undefined ? count(value) : text;
    if (el.textContent !== shown) el.textContent = shown;
    const raw = value === null || value === undefined ? "" : String(value);
    el.setAttribute("data-value", raw);
    if (raw !== "" && typeof value === "number" && Number.isInteger(value)) {
      el.title = value.toLocaleString("en");
    }
  }
  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }
  function perSecond(c, intervalMs) {
    if (!c || c.interval === null || c.interval === undefined || !intervalMs) return "";
    return count(Math.round((c.interval * 1000) / intervalMs)) + " /s";
  }
  function p50p99(s) {
    if (!s || !s.count) return "–";
    return ms(s.p50_ms) + " / " + ms(s.p99_ms);
  }

  // ----- header and totals --------------------------------------------------------------------
  function renderHeader(s) {
    const status = $("#status");
    setText(status, s.status === "ok" ? "OK" : s.status === "degraded" ? "Degraded" : "Down");
    status.className = "badge badge-" + s.status;
    status.setAttribute("data-value", s.status);
    setNumber(byTestId("hit-rate"), s.hit_rate, pct(s.reads ? s.hit_rate : null));
    setNumber(byTestId("interval-hit-rate"), s.interval_hit_rate, pct(s.interval_hit_rate));
    const at = byTestId("updated-at");
    setNumber(at, s.at_ms, clock(s.at_ms));
    at.setAttribute("datetime", new Date(s.at_ms).toISOString());

    const box = $("#reasons");
    box.hidden = s.reasons.length === 0;
    const list = byTestId("reasons");
    const html = s.reasons.map((r) => "<li>" + escapeHtml(r) + "</li>").join("");
    if (list.innerHTML !== html) list.innerHTML = html;
  }

  function renderTotals(s) {
    const interval = s.interval_ms;
    setNumber(byTestId("total-hits"), s.hits);
    const hitsDelta = s.layers.reduce((a, l) => a + (l.hits.interval || 0), 0);
    setText(byTestId("hits-per-s"), interval ? count(Math.round((hitsDelta * 1000) / interval)) + " /s" : "");
    setNumber(byTestId("misses"), s.misses);
    setNumber(byTestId("loads"), s.loads.runs.total);
    setText(byTestId("misses-per-s"), s.reads ? pct(s.misses / s.reads) + " of reads" : "");
    setText(byTestId("load-failures"), count(s.loads.failures.total) + " failed · " + perSecond(s.loads.runs, interval));
    setText(byTestId("load-time"), p50p99(s.loads.time.interval));
    setText(byTestId("load-time-total"), "all time: " + p50p99(s.loads.time.total));
    setNumber(byTestId("invalidations-sent"), s.invalidations.sent.total);
    setText(byTestId("invalidations-sent-per-s"), perSecond(s.invalidations.sent, interval));
    setNumber(byTestId("invalidations-received"), s.invalidations.received.total);
    setText(byTestId("bus-lag"), s.bus ? "bus lag p50 / p99: " + p50p99(s.bus_lag.interval || s.bus_lag.total) : "no bus");
    const keys = byTestId("total-keys");
    setNumber(keys, s.usage ? s.usage.total_keys : null);
    keys.setAttribute("data-scanned-at", s.usage ? String(s.usage.at_ms) : "");
    setText(byTestId("memory"), s.usage
      ? "L1 memory " + bytes(Math.round(s.usage.memory_used_mb * 1048576)) + " · scanned " + clock(s.usage.at_ms).slice(0, 8)
      : "scanning…");
  }

  // ----- layer cards --------------------------------------------------------------------------
  function card(layer) {
    const id = layer.layer;
    const el = document.createElement("article");
    el.className = "card";
    el.dataset.layer = id;
    el.setAttribute("aria-labelledby", id + "-title");
    el.setAttribute("data-testid", id + "-card");
    el.innerHTML =
      '<header><h3 id="' + id + '-title">' + id.toUpperCase() + '</h3><span class="backend">' + escapeHtml(layer.backend) + "</span></header>" +
      '<dl class="figures">' +
      fig("Hits", id + "-hits") + fig("Misses", id + "-misses") + fig("Hit rate, 1 s", id + "-hit-rate") +
      fig("Keys", id + "-keys") + fig("Size", id + "-bytes") + fig("Errors", id + "-errors") +
      "</dl>" +
      '<table class="lat" data-testid="' + id + '-latency"><caption>' +
      (id === "l1" ? "L1 reads are not timed (nanoseconds)" : "Store call time") +
      '</caption><thead><tr><th scope="col"></th><th scope="col">p50</th><th scope="col">p90</th><th scope="col">p99</th><th scope="col">calls</th></tr></thead>' +
      '<tbody><tr><th scope="row">last 1 s</th><td></td><td></td><td></td><td></td></tr>' +
      '<tr><th scope="row">all time</th><td></td><td></td><td></td><td></td></tr></tbody></table>' +
      '<ul class="circuits" aria-label="' + id.toUpperCase() + ' circuit breakers" data-testid="' + id + '-circuits"></ul>';
    return el;
  }
  function fig(label, testid) {
    return '<div><dt>' + label + '</dt><dd data-testid="' + testid + '">–</dd></div>';
  }

  function renderLayers(s) {
    const box = $("#layers");
    for (const l of s.layers) {
      let el = byTestId(l.layer + "-card", box);
      if (!el) {
        el = card(l);
        box.appendChild(el);
      }
      setNumber(byTestId(l.layer + "-hits", el), l.hits.total);
      setNumber(byTestId(l.layer + "-misses", el), l.misses.total);
      setNumber(byTestId(l.layer + "-hit-rate", el), l.interval_hit_rate, pct(l.interval_hit_rate));
      const keys = l.keys !== null ? l.keys : l.entries;
      setNumber(byTestId(l.layer + "-keys", el), keys);
      setNumber(byTestId(l.layer + "-bytes", el), l.bytes, bytes(l.bytes));
      setNumber(byTestId(l.layer + "-errors", el), l.errors);
      const rows = el.querySelectorAll(".lat tbody tr");
      [l.latency.interval, l.latency.total].forEach((sum, i) => {
        const cells = rows[i].querySelectorAll("td");
        const has = sum && sum.count > 0;
        setText(cells[0], has ? ms(sum.p50_ms) : "–");
        setText(cells[1], has ? ms(sum.p90_ms) : "–");
        setText(cells[2], has ? ms(sum.p99_ms) : "–");
        setText(cells[3], sum ? count(sum.count) : "–");
      });
      const list = byTestId(l.layer + "-circuits", el);
      let html;
      if (l.circuits.length === 0) {
        html = '<li class="muted">' + (l.layer === "l1" ? "in-process: no circuit breaker" : "no circuit breaker") +
          (l.evictions ? " · " + count(l.evictions) + " evicted" : "") + "</li>";
      } else {
        html = l.circuits.map((c) =>
          '<li><span class="name">' + escapeHtml(c.name) + (c.opened ? " · opened " + count(c.opened) + "×" : "") +
          '</span><span class="state state-' + c.state + '">' + c.state.replace("_", "-") + "</span></li>").join("");
      }
      if (l.recovery_pending) html += '<li class="muted">' + count(l.recovery_pending) + " invalidation(s) owed</li>";
      if (list.innerHTML !== html) list.innerHTML = html;
    }
  }

  // ----- chart --------------------------------------------------------------------------------
  function renderChart(s) {
    const point = { at_ms: s.at_ms, all: s.interval_hit_rate };
    for (const l of s.layers) point[l.layer] = l.interval_hit_rate;
    history.push(point);
    while (history.length > HISTORY) history.shift();

    const svg = $("#hit-chart");
    // The drawing is as wide as the SVG is on screen, so that the labels are not stretched.
    const W = Math.max(200, Math.round(svg.getBoundingClientRect().width) || 720), H = 220, L = 40, R = 8, T = 10, B = 12;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    const x = (i) => L + ((W - L - R) * i) / (HISTORY - 1);
    const y = (r) => T + (H - T - B) * (1 - r);
    const keep = Array.from(svg.querySelectorAll("title, desc"));
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    keep.forEach((k) => svg.appendChild(k));

    for (const r of [0, 0.25, 0.5, 0.75, 1]) {
      svg.appendChild(el("line", { class: "grid", x1: L, x2: W - R, y1: y(r), y2: y(r) }));
      const label = el("text", { class: "axis", x: L - 6, y: y(r) + 4, "text-anchor": "end", "aria-hidden": "true" });
      label.textContent = r * 100 + "%";
      svg.appendChild(label);
    }
    const series = s.layers.map((l) => l.layer).concat(["all"]);
    const offset = HISTORY - history.length;
    for (const name of series) {
      let d = "";
      let pen = false;
      history.forEach((p, i) => {
        const v = p[name];
        if (v === null || v === undefined) { pen = false; return; }
        d += (pen ? "L" : "M") + x(offset + i).toFixed(1) + " " + y(v).toFixed(1) + " ";
        pen = true;
      });
      if (!d) continue;
      const path = el("path", { class: "series", d: d.trim(), stroke: COLORS[name] || "var(--muted)" });
      if (name === "all") path.setAttribute("stroke-dasharray", "5 4");
      svg.appendChild(path);
    }
    const desc = $("#hit-chart-desc");
    const now = series.map((n) => (n === "all" ? "overall" : n.toUpperCase()) + " " + pct(history[history.length - 1][n]));
    desc.textContent = "Latest second: " + now.join(", ") + ".";

    const legend = $("#hit-chart-legend");
    const html = series.map((n) =>
      '<span><span class="key" style="background:' + (COLORS[n] || "var(--muted)") + '"></span>' +
      (n === "all" ? "overall (dashed)" : n.toUpperCase()) + "</span>").join("");
    if (legend.innerHTML !== html) legend.innerHTML = html;
  }
  function el(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  // ----- activity -----------------------------------------------------------------------------
  function renderActivity(s) {
    const body = $(".activity tbody");
    let html;
    if (s.activity.length === 0) {
      html = '<tr><td colspan="5" class="empty">Nothing yet.</td></tr>';
    } else {
      html = s.activity.slice().reverse().map((a) =>
        "<tr><td>" + clock(a.at_ms) + "</td><td>" + escapeHtml(a.kind) + '</td><td class="subject">' +
        (a.subject === null ? '<span class="muted">(not recorded)</span>' : escapeHtml(a.subject)) +
        "</td><td>" + (a.received ? "received" : "sent") + "</td><td>" + (a.lag === null ? "–" : ms(a.lag)) + "</td></tr>").join("");
    }
    if (body.innerHTML !== html) body.innerHTML = html;
  }

  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  // ----- the stream ---------------------------------------------------------------------------
  function render(s) {
    renderHeader(s);
    renderTotals(s);
    renderLayers(s);
    renderChart(s);
    renderActivity(s);
    document.body.setAttribute("data-snapshots", String((Number(document.body.getAttribute("data-snapshots")) || 0) + 1));
  }

  function connect() {
    const link = $("#link");
    const source = new EventSource("events");
    source.addEventListener("open", () => setText(link, "live"));
    source.addEventListener("error", () => setText(link, "reconnecting…"));
    source.addEventListener("snapshot", (e) => {
      let s;
      try { s = JSON.parse(e.data); } catch (err) { return; }
      render(s);
    });
  }

  connect();
})();
