"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const METRICS = DATA.metrics, SYSTEMS = DATA.systems, UTTS = DATA.utts;
  const DASH = "\u2013";
  const HAS_BITRATE = SYSTEMS.some((s) => s.bitrate !== null && s.bitrate !== undefined);
  const SVGNS = "http://www.w3.org/2000/svg";
  const COLORS = ["#2457a6", "#c0392b", "#1e8449", "#8e44ad", "#d35400", "#117a8b", "#7d6608"];

  // ---- DOM helpers: strings always become text nodes, never markup -------------------------
  function build(make, tag, attrs, kids) {
    const e = make(tag);
    if (attrs) {
      for (const k of Object.keys(attrs)) {
        const v = attrs[k];
        if (v === null || v === undefined || v === false) continue;
        if (k === "on") { for (const ev of Object.keys(v)) e.addEventListener(ev, v[ev]); }
        else if (k === "class") e.setAttribute("class", v);
        else e.setAttribute(k, String(v));
      }
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      e.appendChild(typeof kid === "object" ? kid : document.createTextNode(String(kid)));
    }
    return e;
  }
  function el(tag, attrs, ...kids) { return build((t) => document.createElement(t), tag, attrs, kids); }
  function sv(tag, attrs, ...kids) { return build((t) => document.createElementNS(SVGNS, t), tag, attrs, kids); }
  function $(id) { return document.getElementById(id); }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  // ---- numbers: the same rules as the Markdown/LaTeX tables (reports.tables.format_value) ---
  function fmt(m, v) {
    if (v === null || v === undefined || Number.isNaN(v)) return DASH;
    if (m.percent) return (100 * v).toFixed(2);
    if (m.unit === "count") return v.toFixed(0);
    if (m.unit === "cents") return v.toFixed(1);
    return v.toFixed(3);
  }
  function header(m) {
    const unit = m.percent ? "%" : m.unit;
    // bookkeeping (trial counts, chance level) is context, not a score: no direction arrow
    return m.label + (unit ? " (" + unit + ")" : "") + (m.book ? "" : " " + (m.higher ? "\u2191" : "\u2193"));
  }
  function isMissing(v) { return v === null || v === undefined || (typeof v === "number" && Number.isNaN(v)); }
  // Sort rows by key(row): numbers numerically, strings by locale; missing values always last.
  function sortRows(rows, key, dir) {
    const sign = dir === "descending" ? -1 : 1;
    return rows.map((r, i) => [key(r), i, r]).sort((a, b) => {
      const ma = isMissing(a[0]), mb = isMissing(b[0]);
      if (ma || mb) return ma === mb ? a[1] - b[1] : (ma ? 1 : -1);
      let c;
      if (typeof a[0] === "number" && typeof b[0] === "number") c = a[0] - b[0];
      else c = String(a[0]).localeCompare(String(b[0]), undefined, { numeric: true });
      return c !== 0 ? sign * c : a[1] - b[1];
    }).map((x) => x[2]);
  }
  function nextDir(th) { return th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending"; }
  function markSorted(table, th, dir) {
    for (const h of table.querySelectorAll("th[aria-sort]")) h.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", dir);
  }

  // ---- summary table ------------------------------------------------------------------------
  let summaryStat = DATA.stat;
  function resolveStat(m, s, stat) {
    const st = stat === "auto" ? m.table_stat : stat;
    return (st === "pooled" || s.mean === null || s.mean === undefined) ? "pooled" : "mean";
  }
  function summaryCell(si, m) {
    const s = SYSTEMS[si].summary[m.key];
    if (!s) return { text: DASH, value: null, title: "not measured" };
    const st = resolveStat(m, s, summaryStat);
    const v = s[st];
    if (v === null || v === undefined) return { text: DASH, value: null, title: "undefined" };
    let text = fmt(m, v);
    const ci = s["ci_" + st];
    let title = (st === "pooled" ? "corpus-level (pooled)" : "utterance mean") + ", n = " + s.n + (s.n_unit === "trials" ? " trials" : "");
    if (ci && ci[0] !== null && ci[1] !== null && !m.book) {
      // the symmetric form only where it stays in the metric's range (rates 0-100 %, errors >= 0)
      const half = (ci[1] - ci[0]) / 2, lo = (m.percent || !m.higher) ? 0 : null, hi = m.percent ? 1 : null;
      const fits = (lo === null || v - half >= lo - 1e-12) && (hi === null || v + half <= hi + 1e-12);
      if (m.unit !== "count") text += fits ? " \u00b1 " + fmt(m, half) : " [" + fmt(m, ci[0]) + ", " + fmt(m, ci[1]) + "]";
      title += "; 95% CI [" + fmt(m, ci[0]) + ", " + fmt(m, ci[1]) + "]";
    }
    if (s.sig && summaryStat === DATA.stat && !m.book) {
      if (s.sig.mark) text += "*";
      title += "; vs " + s.sig.baseline + ": \u0394 " + fmt(m, s.sig.delta) +
        ", p = " + (s.sig.p === null ? DASH : s.sig.p.toPrecision(2)) + " (" + s.sig.n + " common)";
    }
    return { text: text, value: v, title: title };
  }
  function renderSummary() {
    const table = $("summary-table");
    const head = el("tr", null,
      el("th", { class: "sortable", "data-col": "dataset" }, "Dataset"),
      el("th", { class: "sortable", "data-col": "system" }, "System"),
      METRICS.map((m) => el("th", { class: "sortable num", "data-col": m.key, title: m.description }, header(m))),
      HAS_BITRATE ? el("th", { class: "sortable num", "data-col": "bitrate", title: "bits per second of the discrete streams" }, "Bitrate (bps)") : null,
      el("th", { class: "sortable num", "data-col": "n" }, "N"));
    clear(table).appendChild(el("thead", null, head));
    const body = el("tbody");
    SYSTEMS.forEach((s, si) => {
      const tr = el("tr", { "data-row": si },
        el("td", { "data-v": s.dataset }, s.dataset),
        el("td", { "data-v": s.row_label, title: s.unfinished ? "not finished: " + s.unfinished : null },
          el("a", { href: "#sys-" + si }, s.row_label), s.unfinished ? " \u2020" : null));
      for (const m of METRICS) {
        const c = summaryCell(si, m);
        tr.appendChild(el("td", { class: "num", title: c.title, "data-v": c.value === null ? "" : c.value }, c.text));
      }
      if (HAS_BITRATE) tr.appendChild(el("td", { class: "num", "data-v": isMissing(s.bitrate) ? "" : s.bitrate,
          title: s.bitrate_source === "measured" ? "measured from the encoder's output (total bits / total seconds)"
            : s.bitrate_source === "declared" ? "declared, not measured" : "from the stream specs" },
        isMissing(s.bitrate) ? DASH : (Number.isInteger(s.bitrate) ? s.bitrate.toFixed(0) : s.bitrate.toFixed(1))));
      const scored = s.n_ok + s.n_partial;
      tr.appendChild(el("td", { class: "num", "data-v": scored }, scored + "/" + s.n_total));
      body.appendChild(tr);
    });
    table.appendChild(body);
    head.querySelectorAll("th").forEach((th, col) => th.addEventListener("click", () => {
      const dir = nextDir(th);
      const rows = Array.from(body.rows);
      const key = (tr) => {
        const raw = tr.cells[col].getAttribute("data-v");
        if (raw === "") return null;
        return col < 2 ? raw : Number(raw);
      };
      for (const tr of sortRows(rows, key, dir)) body.appendChild(tr);
      markSorted(table, th, dir);
    }));
    $("stat-note").textContent = DATA.captions[summaryStat] +
      (summaryStat === DATA.stat ? "" : " Significance marks are shown in the '" + DATA.stat + "' view only.");
  }

  // ---- plots (inline SVG) -----------------------------------------------------------------
  function niceRange(lo, hi, zero, unit) {
    if (zero) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
    if (!(hi > lo)) {
      // a single value (e.g. every GPE 0): widen around it, never below 0 for non-negative data
      const d = Math.abs(lo) * 0.1 || unit;
      lo = (lo >= 0 && lo - d < 0) ? 0 : lo - d;
      hi += d;
    }
    return [lo, hi];
  }
  function comparisonPlot(m) {
    // one row per system: the value with its 95% CI whisker (never for bookkeeping values)
    if (m.book) return null;
    const rows = SYSTEMS.map((s, si) => {
      const x = s.summary[m.key];
      if (!x) return null;
      const st = resolveStat(m, x, DATA.stat), v = x[st], ci = x["ci_" + st];
      return v === null || v === undefined ? null : { si: si, v: v, lo: ci ? ci[0] : null, hi: ci ? ci[1] : null };
    }).filter((r) => r);
    if (!rows.length) return null;
    const scale = m.percent ? 100 : 1;
    const all = [];
    rows.forEach((r) => { all.push(r.v); if (r.lo !== null) all.push(r.lo, r.hi); });
    const [lo, hi] = niceRange(Math.min(...all), Math.max(...all), m.percent || m.unit === "count", m.percent ? 0.01 : 1);
    const W = 300, L = 110, R = 14, rowH = 20, H = rowH * SYSTEMS.length + 30;
    const X = (v) => L + (W - L - R) * (v - lo) / (hi - lo);
    const g = sv("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img" });
    g.appendChild(sv("line", { x1: L, x2: W - R, y1: H - 18, y2: H - 18, stroke: "#999" }));
    g.appendChild(sv("text", { x: L, y: H - 4, "text-anchor": "start" }, (lo * scale).toPrecision(3)));
    g.appendChild(sv("text", { x: W - R, y: H - 4, "text-anchor": "end" }, (hi * scale).toPrecision(3)));
    for (const r of rows) {
      const y = 12 + rowH * r.si, c = COLORS[r.si % COLORS.length];
      g.appendChild(sv("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, SYSTEMS[r.si].label));
      if (r.lo !== null && r.hi !== null) {
        g.appendChild(sv("line", { x1: X(r.lo), x2: X(r.hi), y1: y, y2: y, stroke: c, "stroke-width": 2 }));
        for (const e of [r.lo, r.hi]) g.appendChild(sv("line", { x1: X(e), x2: X(e), y1: y - 5, y2: y + 5, stroke: c, "stroke-width": 2 }));
      }
      g.appendChild(sv("circle", { cx: X(r.v), cy: y, r: 4, fill: c },
        sv("title", null, SYSTEMS[r.si].label + ": " + fmt(m, r.v))));
    }
    return el("div", { class: "plot" }, el("div", { class: "title" }, header(m)), g);
  }
  function histogram(si, mi, range) {
    const m = METRICS[mi];
    const vals = [];
    for (const u of UTTS) { const e = u.s[si]; if (e && e.v && !isMissing(e.v[mi])) vals.push(e.v[mi]); }
    if (!vals.length) return null;
    const [lo, hi] = range, nb = 20, counts = new Array(nb).fill(0);
    for (const v of vals) counts[Math.min(nb - 1, Math.max(0, Math.floor(nb * (v - lo) / (hi - lo))))]++;
    const W = 220, H = 90, P = 4, top = Math.max(...counts);
    const g = sv("svg", { width: W, height: H + 16, viewBox: "0 0 " + W + " " + (H + 16), role: "img" });
    counts.forEach((c, i) => {
      const h = (H - P) * c / top, bw = (W - 2 * P) / nb;
      g.appendChild(sv("rect", { x: P + i * bw + 0.5, y: H - h, width: Math.max(bw - 1, 1), height: h,
        fill: COLORS[si % COLORS.length], opacity: 0.75 }, sv("title", null, c + " utterances")));
    });
    const mean = vals.reduce((a, b) => a + b, 0) / vals.length;
    const mx = P + (W - 2 * P) * (mean - lo) / (hi - lo);
    g.appendChild(sv("line", { x1: mx, x2: mx, y1: 0, y2: H, stroke: "#000", "stroke-dasharray": "3,2" }));
    const scale = m.percent ? 100 : 1;
    g.appendChild(sv("text", { x: P, y: H + 13 }, (lo * scale).toPrecision(3)));
    g.appendChild(sv("text", { x: W - P, y: H + 13, "text-anchor": "end" }, (hi * scale).toPrecision(3)));
    return el("div", { class: "plot" },
      el("div", { class: "title" }, header(m) + " \u2014 n = " + vals.length + ", mean " + fmt(m, mean)), g);
  }
  function renderPlots() {
    const cmp = clear($("compare-plots"));
    for (const m of METRICS) { const p = comparisonPlot(m); if (p) cmp.appendChild(p); }
    // shared value range per metric, so the systems' histograms compare at a glance
    const ranges = METRICS.map((m, mi) => {
      let lo = Infinity, hi = -Infinity;
      for (const u of UTTS) for (const e of u.s) if (e && e.v && !isMissing(e.v[mi])) { lo = Math.min(lo, e.v[mi]); hi = Math.max(hi, e.v[mi]); }
      return lo === Infinity ? null : niceRange(lo, hi, false, m.percent ? 0.01 : 1);
    });
    const box = clear($("system-plots"));
    SYSTEMS.forEach((s, si) => {
      const plots = el("div", { class: "plots" });
      METRICS.forEach((m, mi) => { if (ranges[mi] && !m.book) { const h = histogram(si, mi, ranges[mi]); if (h) plots.appendChild(h); } });
      box.appendChild(el("div", { class: "card", id: "sys-" + si },
        el("h3", null, s.label + " \u2014 per-utterance distributions"),
        el("div", { class: "muted small" }, "Dashed line: utterance mean. Axes are shared across systems."),
        plots, worstBlock(si)));
    });
  }
  function worstBlock(si) {
    const s = SYSTEMS[si];
    const lists = [];
    METRICS.forEach((m, mi) => {
      const w = s.worst[m.key];
      if (!w || !w.length || m.book) return;
      lists.push(el("tr", null, el("td", null, header(m)), el("td", null,
        w.map(([ui, v], k) => [k ? ", " : "", el("a", { href: "#u=" + ui + "&s=" + si }, UTTS[ui].id), " (" + fmt(m, v) + ")"]))));
    });
    if (!lists.length) return null;
    return el("div", null, el("h3", null, "Worst " + DATA.worst_k + " utterances per metric"),
      el("table", { class: "kv worst" }, el("tbody", null, lists)));
  }

  // ---- drill-down: every (utterance, system) pair, filtered, sorted, paginated --------------
  const ALL_ROWS = [];
  UTTS.forEach((u, ui) => u.s.forEach((e, si) => { if (e) ALL_ROWS.push({ ui: ui, si: si }); }));
  const COLS = [
    { id: "utt", label: "Utterance", key: (r) => UTTS[r.ui].id, cell: (r) => UTTS[r.ui].id },
    { id: "spk", label: "Speaker", key: (r) => UTTS[r.ui].spk, cell: (r) => UTTS[r.ui].spk },
    { id: "sys", label: "System", key: (r) => SYSTEMS[r.si].label, cell: (r) => SYSTEMS[r.si].label },
    { id: "status", label: "Status", key: (r) => UTTS[r.ui].s[r.si].st,
      cell: (r) => el("span", { class: "status-" + UTTS[r.ui].s[r.si].st }, UTTS[r.ui].s[r.si].st) },
  ].concat(METRICS.map((m, mi) => ({ id: m.key, label: header(m), num: true,
    key: (r) => { const v = UTTS[r.ui].s[r.si].v; return v ? v[mi] : null; },
    cell: (r) => { const v = UTTS[r.ui].s[r.si].v; return fmt(m, v ? v[mi] : null); } })))
    .concat([{ id: "text", label: "Text", cls: "text", key: (r) => UTTS[r.ui].text,
      cell: (r) => { const t = UTTS[r.ui].text || ""; return t.length > 80 ? t.slice(0, 79) + "\u2026" : t; } }]);
  const view = { rows: ALL_ROWS, page: 0, sort: null, dir: "ascending" };
  function applyFilters() {
    const q = $("drill-search").value.trim().toLowerCase();
    const sys = $("drill-system").value, st = $("drill-status").value;
    let rows = ALL_ROWS.filter((r) => {
      const u = UTTS[r.ui], e = u.s[r.si];
      if (sys !== "" && String(r.si) !== sys) return false;
      if (st !== "" && e.st !== st) return false;
      if (!q) return true;
      return (u.id + "\n" + (u.spk || "") + "\n" + (u.text || "") + "\n" + (e.hyp || "")).toLowerCase().includes(q);
    });
    if (view.sort !== null) rows = sortRows(rows, COLS[view.sort].key, view.dir);
    view.rows = rows;
    view.page = 0;
    renderDrill();
  }
  function renderDrillHead() {
    const table = clear($("drill"));   // replaces the static first page
    const tr = el("tr", null, COLS.map((c, ci) => el("th", { class: "sortable" + (c.num ? " num" : ""),
      "data-col": c.id, on: { click: (ev) => {
        const th = ev.currentTarget;
        view.dir = nextDir(th); view.sort = ci;
        markSorted(table, th, view.dir);
        applyFilters();
      } } }, c.label)));
    table.appendChild(el("thead", null, tr));
    table.appendChild(el("tbody"));
  }
  function renderDrill() {
    const size = DATA.page_size, n = view.rows.length;
    const pages = Math.max(1, Math.ceil(n / size));
    view.page = Math.min(Math.max(0, view.page), pages - 1);
    const body = clear($("drill").tBodies[0]);
    const current = currentDetail();
    for (const r of view.rows.slice(view.page * size, (view.page + 1) * size)) {
      const tr = el("tr", { "data-u": r.ui, "data-s": r.si, on: { click: () => { location.hash = "u=" + r.ui + "&s=" + r.si; } } },
        COLS.map((c) => el("td", { class: c.num ? "num" : (c.cls || null) }, c.cell(r))));
      if (current && current.ui === r.ui && current.si === r.si) tr.classList.add("current");
      body.appendChild(tr);
    }
    $("drill-pos").textContent = n ? ("rows " + (view.page * size + 1) + "\u2013" + Math.min(n, (view.page + 1) * size) +
      " of " + n + " (page " + (view.page + 1) + "/" + pages + ")") : "no rows match";
    $("drill-prev").disabled = view.page === 0;
    $("drill-next").disabled = view.page >= pages - 1;
  }
  function setupDrill() {
    const sel = $("drill-system");
    sel.appendChild(el("option", { value: "" }, "all systems"));
    SYSTEMS.forEach((s, si) => sel.appendChild(el("option", { value: si }, s.label)));
    const st = $("drill-status");
    st.appendChild(el("option", { value: "" }, "any status"));
    for (const v of ["ok", "partial", "failed", "incomplete"]) st.appendChild(el("option", { value: v }, v));
    renderDrillHead();
    $("drill-search").addEventListener("input", applyFilters);
    sel.addEventListener("change", applyFilters);
    st.addEventListener("change", applyFilters);
    $("drill-prev").addEventListener("click", () => { view.page--; renderDrill(); });
    $("drill-next").addEventListener("click", () => { view.page++; renderDrill(); });
    renderDrill();
  }

  // ---- detail panel -------------------------------------------------------------------------
  function currentDetail() {
    const h = new URLSearchParams(location.hash.replace(/^#/, ""));
    if (!h.has("u")) return null;
    const ui = Number(h.get("u")), si = h.has("s") ? Number(h.get("s")) : null;
    return (Number.isInteger(ui) && UTTS[ui]) ? { ui: ui, si: si } : null;
  }
  function audioSrc(a) {
    if (!a) return null;
    if (a.href) return a.href;
    if (a.embed) {
      const node = $("audio-" + a.embed);
      return node ? "data:" + a.mime + ";base64," + node.textContent.trim() : null;
    }
    return null;
  }
  function player(a, what) {
    const src = audioSrc(a);
    if (!src) return el("span", { class: "muted" }, what + " audio not available" + (a && a.path ? " (" + a.path + " was not found when the report was made)" : ""));
    return el("audio", { controls: "", preload: "none", src: src, title: a.path || what });
  }
  function wordDiff(ops) {
    return el("div", { class: "transcript" }, ops.map(([op, r, h], i) => {
      const sep = i ? " " : "";
      if (op === "=") return [sep, el("span", { class: "w w-eq" }, r)];
      if (op === "s") return [sep, el("span", { class: "w w-sub", title: "substitution: " + r + " \u2192 " + h },
        el("span", { class: "was" }, r), h)];
      if (op === "d") return [sep, el("span", { class: "w w-del", title: "deletion" }, r)];
      return [sep, el("span", { class: "w w-ins", title: "insertion" }, h)];
    }));
  }
  function f0Plot(track, ref, color) {
    const W = 640, H = 170, L = 40, B = 20, T = 8, R = 8;
    const n = Math.max(track.o.length, ref.length);
    const voiced = track.o.concat(ref).filter((v) => v > 0);
    if (!n || !voiced.length) return el("div", { class: "muted" }, "no voiced frames in either track");
    const lo = Math.min(...voiced) * 0.9, hi = Math.max(...voiced) * 1.1;
    const t1 = track.t0 + track.dt * Math.max(n - 1, 1);
    const X = (t) => L + (W - L - R) * (t - track.t0) / (t1 - track.t0);
    const Y = (f) => T + (H - T - B) * (1 - (f - lo) / (hi - lo));
    const g = sv("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", class: "f0" });
    g.appendChild(sv("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "none", stroke: "#ccc" }));
    for (const f of [lo, (lo + hi) / 2, hi]) g.appendChild(sv("text", { x: L - 4, y: Y(f) + 4, "text-anchor": "end" }, Math.round(f)));
    g.appendChild(sv("text", { x: L, y: H - 5 }, track.t0.toFixed(2) + " s"));
    g.appendChild(sv("text", { x: W - R, y: H - 5, "text-anchor": "end" }, t1.toFixed(2) + " s"));
    const line = (vals, stroke, width, cls) => {
      // one polyline per voiced run: unvoiced frames (0) break the contour
      let pts = [];
      const flush = () => {
        if (pts.length > 1) g.appendChild(sv("polyline", { points: pts.join(" "), fill: "none", stroke: stroke, "stroke-width": width, class: cls }));
        else if (pts.length === 1) { const [x, y] = pts[0].split(","); g.appendChild(sv("circle", { cx: x, cy: y, r: 1.5, fill: stroke, class: cls })); }
        pts = [];
      };
      vals.forEach((v, i) => { if (v > 0) pts.push(X(track.t0 + i * track.dt).toFixed(1) + "," + Y(v).toFixed(1)); else flush(); });
      flush();
    };
    line(ref, "#8a8f98", 3, "f0-ref");
    line(track.o, color, 1.5, "f0-out");
    return el("div", null, g, el("div", { class: "legend small" },
      el("span", { style: "color:#8a8f98" }, "\u2501 reference"), el("span", { style: "color:" + color }, "\u2501 output (on the reference frames)"),
      el("span", { class: "muted" }, "Hz; gaps are unvoiced frames")));
  }
  function metricTable(e) {
    const rows = METRICS.map((m, mi) => (e.v && !isMissing(e.v[mi])) ? el("tr", null, el("td", null, header(m)), el("td", { class: "num" }, fmt(m, e.v[mi]))) : null).filter((x) => x);
    return rows.length ? el("table", { class: "kv" }, el("tbody", null, rows)) : null;
  }
  function systemCard(u, si) {
    const e = u.s[si], s = SYSTEMS[si], color = COLORS[si % COLORS.length];
    const card = el("div", { class: "card", "data-s": si },
      el("h3", null, el("span", { style: "color:" + color }, "\u25A0 "), s.label, " ",
        el("span", { class: "status-" + e.st }, "[" + e.st + "]")));
    if (e.reason) card.appendChild(el("div", { class: "status-failed reason" }, (e.stage ? e.stage + ": " : "") + e.reason));
    if (e.errors) for (const g of Object.keys(e.errors)) card.appendChild(el("div", { class: "status-partial reason" }, g + " failed: " + e.errors[g]));
    if (e.out !== undefined) card.appendChild(el("div", null, "Output: ", player(e.out, "output")));
    const mt = metricTable(e);
    if (mt) card.appendChild(mt);
    if (e.ol) card.appendChild(el("div", { class: "status-partial reason" }, "ASR outlier: " + e.ol +
      " (a looping or hallucinating recogniser; the utterance is still scored)"));
    if (e.loop) card.appendChild(el("div", { class: "status-partial reason" }, "Recogniser loop guard: " + e.loop));
    if (e.w) {
      card.appendChild(el("div", { class: "small muted" }, "Recognised words vs reference (normalised): ",
        el("span", { class: "w w-sub" }, "substitution"), " ", el("span", { class: "w w-del" }, "deletion"), " ",
        el("span", { class: "w w-ins" }, "insertion")));
      card.appendChild(wordDiff(e.w));
    }
    if (e.ph) card.appendChild(el("table", { class: "kv phones small" }, el("tbody", null,
      el("tr", null, el("td", null, "reference phones"), el("td", { class: "transcript" }, e.ph[0] || DASH)),
      el("tr", null, el("td", null, "recognised phones"), el("td", { class: "transcript" }, e.ph[1] || DASH)))));
    if (e.pd && e.pd.length) {
      card.appendChild(el("div", { class: "small muted" }, "Recognised phones vs reference phones:"));
      card.appendChild(el("div", { class: "phone-diff" }, wordDiff(e.pd)));
    }
    if (e.f0) card.appendChild(f0Plot(e.f0, u.f0r[e.f0.r], color));
    return card;
  }
  function renderDetail() {
    const cur = currentDetail();
    const box = $("detail");
    for (const tr of document.querySelectorAll("#drill tbody tr.current")) tr.classList.remove("current");
    if (!cur) { box.hidden = true; return; }
    const u = UTTS[cur.ui];
    clear(box);
    box.hidden = false;
    box.appendChild(el("h2", null, "Utterance ", el("span", { class: "utt-id" }, u.id),
      " ", el("button", { type: "button", on: { click: () => { location.hash = "drilldown"; } } }, "close")));
    box.appendChild(el("table", { class: "kv" }, el("tbody", null,
      el("tr", null, el("td", null, "Speaker"), el("td", null, u.spk || DASH)),
      el("tr", null, el("td", null, "Text"), el("td", { class: "utt-text" }, u.text || DASH)),
      el("tr", null, el("td", null, "Reference"), el("td", null, player(u.ref, "reference"))))));
    // the system asked for first, then the others that scored this utterance
    const order = u.s.map((e, si) => si).filter((si) => u.s[si]);
    if (cur.si !== null && u.s[cur.si]) order.sort((a, b) => (b === cur.si) - (a === cur.si));
    for (const si of order) box.appendChild(systemCard(u, si));
    const tr = document.querySelector('#drill tbody tr[data-u="' + cur.ui + '"][data-s="' + cur.si + '"]');
    if (tr) tr.classList.add("current");
    box.scrollIntoView({ block: "start" });
  }

  // ---- failures and manifest ----------------------------------------------------------------
  function renderFailures() {
    const box = clear($("failures"));
    let any = false;
    SYSTEMS.forEach((s, si) => {
      const bad = [];
      UTTS.forEach((u, ui) => { const e = u.s[si]; if (e && (e.st === "failed" || e.st === "partial")) bad.push(ui); });
      if (!bad.length) return;
      any = true;
      const LIMIT = 200;
      box.appendChild(el("h3", null, s.label + ": " + s.n_failed + " failed, " + s.n_partial + " partial"));
      box.appendChild(el("table", null, el("thead", null, el("tr", null, el("th", null, "Utterance"), el("th", null, "Status"), el("th", null, "Reason"))),
        el("tbody", null, bad.slice(0, LIMIT).map((ui) => {
          const e = UTTS[ui].s[si];
          const why = e.reason ? (e.stage ? e.stage + ": " : "") + e.reason :
            Object.keys(e.errors || {}).map((g) => g + ": " + e.errors[g]).join("; ");
          return el("tr", null, el("td", null, el("a", { href: "#u=" + ui + "&s=" + si }, UTTS[ui].id)),
            el("td", { class: "status-" + e.st }, e.st), el("td", null, why));
        }))));
      if (bad.length > LIMIT) box.appendChild(el("div", { class: "muted" }, (bad.length - LIMIT) + " more: filter the drill-down by status."));
    });
    if (!any) box.appendChild(el("p", { class: "muted" }, "No failed or partial utterances."));
  }
  function tree(v) {
    if (v === null || typeof v !== "object") return el("span", { class: "v" }, v === null ? "null" : String(v));
    const keys = Object.keys(v);
    if (!keys.length) return el("span", { class: "v" }, Array.isArray(v) ? "[]" : "{}");
    return el("ul", { class: "tree" }, keys.map((k) => {
      const x = v[k];
      if (x !== null && typeof x === "object" && Object.keys(x).length)
        return el("li", null, el("details", null, el("summary", null, el("span", { class: "k" }, k)), tree(x)));
      return el("li", null, el("span", { class: "k" }, k + ": "), tree(x));
    }));
  }
  function renderManifests() {
    const box = clear($("manifest"));
    DATA.manifests.forEach((mf, si) => {
      const rows = mf.facts.map(([k, v]) => el("tr", null, el("td", null, k), el("td", null, v)));
      box.appendChild(el("div", { class: "card" }, el("h3", null, SYSTEMS[si].label),
        el("table", { class: "kv" }, el("tbody", null, rows)),
        el("details", null, el("summary", null, "full manifest.json"), tree(mf.manifest))));
    });
  }

  // ---- page ---------------------------------------------------------------------------------
  function init() {
    const stats = $("stat-select");
    for (const st of ["auto", "mean", "pooled"]) stats.appendChild(el("option", { value: st, selected: st === DATA.stat ? "" : null }, st));
    stats.addEventListener("change", () => { summaryStat = stats.value; renderSummary(); });
    renderSummary();
    renderPlots();
    setupDrill();
    renderFailures();
    renderManifests();
    window.addEventListener("hashchange", renderDetail);
    renderDetail();
    document.body.setAttribute("data-ready", "1");
  }
  init();
})();
