/* kubemonitor live views. The page embeds each view's first snapshot; this script is
 * the one place that turns snapshots into figures, rows and charts (in the units a
 * person reads, times in the browser's zone), then keeps them live over one websocket
 * per page, with a subscription per view. Reconnects with backoff. */
(function () {
  "use strict";

  var body = document.body;
  // Every URL comes from the page (the server's named routes, under its URL prefix).
  var STATS_URL = body.getAttribute("data-stats-url");
  var LIVE_URL = body.getAttribute("data-live-url");
  var LOGIN_URL = body.getAttribute("data-login-url");
  var OVERVIEW_URL = body.getAttribute("data-overview-url");
  var RANGE = body.getAttribute("data-range") || "1h";
  var stateEl = document.getElementById("conn-state");
  var degradedEl = document.getElementById("degraded");
  var degradedMsg = document.getElementById("degraded-message");
  var COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
                "#ea580c", "#4f46e5", "#0d9488", "#b91c1c"];

  // -- one time zone per page: the browser's, named on the page ------------------------
  var zone = (Intl.DateTimeFormat().resolvedOptions().timeZone) || "local time";
  var tzEl = document.getElementById("tz");
  if (tzEl) tzEl.textContent = zone;
  var timeFmt = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "2-digit", day: "2-digit",
                                                     hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  var clockFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hour12: false });
  function localTime(value) { return value ? timeFmt.format(new Date(value)) : ""; }

  // -- units a person reads --------------------------------------------------------------
  // scaleFor(unit, magnitude) -> {factor, label, binary}: value / factor is shown in `label`.
  var BYTES = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  function scaleFor(unit, magnitude) {
    var m = Math.abs(magnitude || 0), i;
    switch (unit) {
      case "millicores":
        return m >= 1000 ? { factor: 1000, label: "cores" } : { factor: 1, label: "millicores" };
      case "bytes": case "bytes/s":
        for (i = 0; i < BYTES.length - 1 && m >= Math.pow(1024, i + 1); i++) {}
        return { factor: Math.pow(1024, i), label: BYTES[i] + (unit === "bytes/s" ? "/s" : ""), binary: true };
      case "megabytes":
        return m >= 1000 ? { factor: 1000, label: "GB" } : { factor: 1, label: "MB" };
      case "milliseconds":
        if (m >= 86400e3) return { factor: 86400e3, label: "d" };
        if (m >= 3600e3) return { factor: 3600e3, label: "h" };
        if (m >= 60e3) return { factor: 60e3, label: "min" };
        return { factor: 1e3, label: "s" };
      case "nanoseconds":  // cumulative CPU time
        if (m >= 3600e9) return { factor: 3600e9, label: "core-h" };
        if (m >= 60e9) return { factor: 60e9, label: "core-min" };
        return { factor: 1e9, label: "core-s" };
      case "fraction":
        return { factor: 0.01, label: "%" };
      default:
        return { factor: 1, label: unit || "" };
    }
  }

  function number(v) {
    var a = Math.abs(v);
    return v.toFixed(a === 0 ? 0 : a >= 100 ? 0 : a >= 10 ? 1 : 2);
  }

  function formatValue(value, unit) {
    if (value === null || value === undefined) return "–";
    var s = scaleFor(unit, value);
    return number(value / s.factor) + (s.label ? " " + s.label : "");
  }

  // One unit per column: every cell of a column in the unit its largest value needs, the
  // unit named in the column's header (never "4.50 cores" above "103 millicores").
  function columnScale(values, unit) {
    var top = 0;
    values.forEach(function (v) { if (v !== null && v !== undefined) top = Math.max(top, Math.abs(v)); });
    return scaleFor(unit, top);
  }
  function inScale(value, scale) {
    return value === null || value === undefined ? "–" : number(value / scale.factor);
  }
  function setUnitHeader(th, text, scale) {
    if (th) th.textContent = text + (scale.label ? " (" + scale.label + ")" : "");
  }

  // -- one colour per namespace (or pod) on the whole page: every chart and swatch agree --
  var pageColors = {}, nextColor = 0;
  function colorOf(name) {
    if (!(name in pageColors)) pageColors[name] = COLORS[nextColor++ % COLORS.length];
    return pageColors[name];
  }

  // Round ticks in the chosen unit: 1, 2, 5 x 10^n of it (binary units stay binary).
  function incrsFor(scale) {
    var out = [];
    for (var e = -3; e <= 9; e++) {
      [1, 2, 5].forEach(function (k) { out.push(k * Math.pow(10, e) * scale.factor); });
    }
    return out;
  }

  // Tick labels with as many decimals as the step needs (0.5, 1.0, 1.5 cores; 2, 4, 6 GiB).
  function tickLabels(vals, incr, scale) {
    var step = (incr || 1) / scale.factor;
    var digits = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
    return vals.map(function (v) { return v === null ? "" : (v / scale.factor).toFixed(digits); });
  }

  function cell(text, cls) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : text;
    if (cls) td.className = cls;
    return td;
  }

  function emptyRow(colspan, text) {
    var tr = document.createElement("tr");
    tr.className = "empty";
    var td = cell(text);
    td.colSpan = colspan;
    tr.appendChild(td);
    return tr;
  }

  function statsUrl(metric, namespace) {
    return STATS_URL + metric + (namespace && namespace !== "all" ? "/" + encodeURIComponent(namespace) : "") +
           (RANGE !== "1h" ? "?range=" + RANGE : "");
  }

  // What the server accepts as a namespace: anything else the data holds (a collector's
  // odd tag, "../../billing") gets no link, and its invisible or direction characters
  // are shown as escapes, so a look-alike of another group's name cannot pass for it.
  var NAMESPACE_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
  var HIDDEN = /[\u0000-\u001f\u007f-\u00a0\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202f\u205f-\u206f\ufeff]/g;
  function shownName(name) {
    return name.replace(HIDDEN, function (c) { return "\\u" + ("000" + c.charCodeAt(0).toString(16)).slice(-4); });
  }

  // -- charts -----------------------------------------------------------------------------
  function chartData(series, requested) {
    // `requested`: a request view's series (cpu/request beside cpu/usage_rate), drawn dashed
    var names = Object.keys(series).sort();
    var asked = requested ? Object.keys(requested).sort() : [];
    var xsSet = {};
    names.forEach(function (n) { series[n].forEach(function (p) { xsSet[p[0]] = true; }); });
    asked.forEach(function (n) { requested[n].forEach(function (p) { xsSet[p[0]] = true; }); });
    var xs = Object.keys(xsSet).map(Number).sort(function (a, b) { return a - b; });
    var index = {};
    xs.forEach(function (x, i) { index[x] = i; });
    var data = [xs.map(function (x) { return x / 1000; })];
    var top = 0;
    function column(points) {
      var ys = new Array(xs.length).fill(null);
      points.forEach(function (p) { ys[index[p[0]]] = p[1]; top = Math.max(top, Math.abs(p[1])); });
      data.push(ys);
    }
    names.forEach(function (n) { column(series[n]); });
    asked.forEach(function (n) { column(requested[n]); });
    return { names: names, asked: asked, data: data, top: top };
  }

  function chartWidth(holder) {
    var style = window.getComputedStyle(holder);
    var inner = holder.clientWidth - parseFloat(style.paddingLeft || 0) - parseFloat(style.paddingRight || 0);
    return Math.max(200, Math.floor(inner));
  }

  function drawChart(view, snapshot) {
    var holder = view.el.querySelector("[data-chart]");
    if (!holder) return;
    if (typeof window.uPlot === "undefined") {
      holder.classList.add("chart-missing");
      holder.textContent = "Chart unavailable: the uPlot asset is missing on the server (reinstall kubemonitor).";
      return;
    }
    var cd = chartData(snapshot.series || {}, view.requested && view.requested.series);
    if (!cd.names.length) {  // an empty chart says why
      if (view.chart) { view.chart.destroy(); view.chart = null; view.signature = null; }
      holder.classList.add("chart-missing");
      holder.textContent = "Nothing to chart: no " + view.metric + " samples in the last " + (snapshot.range || RANGE) +
                           (view.namespace && view.namespace !== "all" ? " in " + view.namespace : "") + ".";
      return;
    }
    holder.classList.remove("chart-missing");
    var scale = scaleFor(view.unit, cd.top);
    var signature = cd.names.join("\u0000") + "|" + cd.asked.join("\u0000") + "|" + scale.label;
    if (view.chart && view.signature === signature) {
      view.chart.setData(cd.data);
      return;
    }
    if (view.chart) view.chart.destroy();
    holder.textContent = "";
    var small = holder.classList.contains("small");
    var unit = view.unit;
    view.chart = new window.uPlot({
      width: chartWidth(holder),
      height: small ? 180 : 320,
      legend: { show: !small },
      scales: { x: { time: true } },
      series: [{ value: function (u, v) { return v === null ? "" : localTime(v * 1000); } }].concat(cd.names.map(function (n, i) {
        return { label: n || "(none)", stroke: colorOf(n), width: 1.5,
                 value: function (u, v) { return formatValue(v, unit); } };
      })).concat(cd.asked.map(function (n) {  // each line's request, dashed, in its colour
        return { label: (n || "(none)") + " requested", stroke: colorOf(n), width: 1, dash: [6, 4],
                 value: function (u, v) { return formatValue(v, unit); } };
      })),
      axes: [{}, { label: scale.label, size: 60, incrs: incrsFor(scale),
                   values: function (u, vals, axis, space, incr) { return tickLabels(vals, incr, scale); } }],
    }, cd.data, holder);
    view.signature = signature;
  }

  // -- tables -----------------------------------------------------------------------------
  function drawLatest(view, snapshot) {
    var tbody = view.el.querySelector("[data-latest]");
    if (!tbody) return;
    var rows = snapshot.latest || [];
    var frag = document.createDocumentFragment();
    var scale = columnScale(rows.map(function (r) { return r.value; }), view.unit);
    setUnitHeader(view.el.querySelector("[data-value-header]"), "Value", scale);
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      var when = cell(localTime(r.time));
      if (r.stale) {
        tr.className = "stale";
        var badge = document.createElement("span");
        badge.className = "badge";
        badge.textContent = "stopped reporting";
        when.appendChild(badge);
      }
      tr.appendChild(when);
      [r.namespace_name, r.pod_name, r.container_name, r.nodename].forEach(function (t) { tr.appendChild(cell(t)); });
      tr.appendChild(cell(inScale(r.value, scale), "num"));
      frag.appendChild(tr);
    });
    if (!rows.length) frag.appendChild(emptyRow(6, "No data yet: no points in the last hour."));
    tbody.textContent = "";
    tbody.appendChild(frag);
  }

  function drawOverview(view, snapshot) {
    var tbody = view.el.querySelector("[data-namespaces]");
    var totalEl = view.el.querySelector("[data-total]");
    var atEl = view.el.querySelector("[data-current-at]");
    var current = snapshot.current || { values: {}, total: 0 };
    var frag = document.createDocumentFragment();
    // every namespace the chart draws has its row: one without usage now shows "–"
    var listed = {};
    Object.keys(current.values).concat(Object.keys(snapshot.series || {})).forEach(function (ns) { listed[ns] = true; });
    var names = Object.keys(listed).sort();
    var scale = columnScale(names.map(function (ns) { return current.values[ns]; }), view.unit);
    setUnitHeader(view.el.querySelector("[data-value-header]"), "Current", scale);
    names.forEach(function (ns) {
      var tr = document.createElement("tr");
      var td = document.createElement("td");
      var a;
      if (NAMESPACE_NAME.test(ns)) {
        a = document.createElement("a");
        a.href = statsUrl(view.metric, ns);
        a.textContent = ns;
      } else {
        a = document.createElement("span");
        a.className = "odd-name";
        a.title = "not a Kubernetes namespace name: it has no page of its own";
        a.textContent = shownName(ns);
      }
      var swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.setAttribute("aria-hidden", "true");
      swatch.style.background = colorOf(ns);
      td.appendChild(swatch);
      td.appendChild(a);
      tr.appendChild(td);
      var value = cell(inScale(current.values[ns], scale), "num");
      if (!(ns in current.values)) value.title = "no usage in the newest complete minute";
      tr.appendChild(value);
      frag.appendChild(tr);
    });
    var nothing = !names.length;
    if (nothing) frag.appendChild(emptyRow(2, "No data yet: no usage in the last " + (snapshot.range || RANGE) + "."));
    if (tbody) { tbody.textContent = ""; tbody.appendChild(frag); }
    // missing data is not zero: a total of nothing says so
    if (totalEl) totalEl.textContent = Object.keys(current.values).length ? formatValue(current.total, view.unit) : "no data yet";
    if (atEl) atEl.textContent = current.at && Object.keys(current.values).length ?
      "(" + clockFmt.format(new Date(current.at)) + "–" + clockFmt.format(new Date(current.at + (current.span_ms || 60000))) + ")" : "";
  }

  function render(view, snapshot) {
    if (!snapshot) return;
    if (view.kind === "request") {  // not drawn itself: its lines go on the usage chart it belongs to
      view.snapshot = snapshot;
      if (view.target) {
        view.target.requested = snapshot;
        if (view.target.snapshot) { try { drawChart(view.target, view.target.snapshot); } catch (e) { console.error("chart", e); } }
      }
      return;
    }
    view.snapshot = snapshot;
    var when = view.el.querySelector(".last-updated");
    if (when) { when.textContent = localTime(snapshot.polled_at); when.setAttribute("datetime", snapshot.polled_at); }
    try { drawChart(view, snapshot); } catch (e) { console.error("chart", e); }
    if (view.kind === "overview") drawOverview(view, snapshot); else drawLatest(view, snapshot);
  }

  // colours first: the sorted names of every view's first snapshot, so a namespace has
  // the same colour on every card whichever card draws it first
  (function seedColors() {
    var seen = {};
    Array.prototype.forEach.call(document.querySelectorAll("[data-live-view] [data-snapshot]"), function (el) {
      try {
        var snap = JSON.parse(el.textContent) || {};
        Object.keys(snap.series || {}).concat(Object.keys((snap.current || {}).values || {}))
          .forEach(function (n) { seen[n] = true; });
      } catch (e) { /* drawn without a seed */ }
    });
    Object.keys(seen).sort().forEach(colorOf);
  })();

  var statsView = null;  // the page's usage view: a request view draws on its chart
  var views = Array.prototype.slice.call(document.querySelectorAll("[data-live-view]")).map(function (el) {
    var view = { el: el, kind: el.getAttribute("data-live-view"), metric: el.getAttribute("data-metric"),
                 namespace: el.getAttribute("data-namespace"), unit: el.getAttribute("data-unit") || "" };
    if (view.kind === "stats") statsView = view;
    if (view.kind === "request") view.target = statsView;
    var initial = el.querySelector("[data-snapshot]");
    if (initial) {
      try { render(view, JSON.parse(initial.textContent)); } catch (e) { console.error("initial snapshot", e); }
    }
    return view;
  });

  window.addEventListener("resize", function () {
    views.forEach(function (v) {
      var holder = v.el.querySelector("[data-chart]");
      if (v.chart && holder) v.chart.setSize({ width: chartWidth(holder), height: v.chart.height });
    });
  });

  // -- the sidebar folds away on narrow screens ---------------------------------------
  var toggle = document.querySelector(".menu-toggle");
  var sidebar = document.getElementById("sidebar");
  if (toggle && sidebar) {
    toggle.hidden = false;
    sidebar.classList.add("folded");
    toggle.addEventListener("click", function () {
      var open = sidebar.classList.toggle("folded") === false;
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  // -- the picker works without JavaScript (GET /web/go); with it, no round trip ------
  var picker = document.getElementById("picker");
  if (picker) {
    picker.addEventListener("submit", function (ev) {
      ev.preventDefault();
      window.location.href = statsUrl(document.getElementById("picker-metric").value,
                                      document.getElementById("picker-namespace").value);
    });
  }

  // -- the websocket --------------------------------------------------------------------
  function setState(text, cls) {
    if (!stateEl) return;
    stateEl.textContent = text;
    stateEl.className = "state-" + cls;
  }

  var backoff = 1000, MAX_BACKOFF = 30000, socket = null, everOpened = false;

  function onMessage(ev) {
    var msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    if (msg.type === "snapshot") {
      views.forEach(function (v) {
        if (v.metric === msg.metric && v.namespace === msg.namespace && (msg.range || "1h") === RANGE) render(v, msg);
      });
    } else if (msg.type === "status") {
      if (degradedEl) degradedEl.hidden = msg.state === "ok";
      if (degradedMsg) degradedMsg.textContent = msg.message || "";
      setState(msg.state === "ok" ? "live" : "live (InfluxDB degraded)", msg.state === "ok" ? "live" : "degraded");
    } else if (msg.type === "error") {
      console.warn("kubemonitor:", msg.message);
    }
  }

  function connect() {
    if (!views.length) { setState("nothing to watch", "idle"); return; }
    setState(everOpened ? "reconnecting…" : "connecting…", "connecting");
    var opened = false;
    socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + LIVE_URL);
    socket.onopen = function () {
      opened = everOpened = true;
      backoff = 1000;
      setState("live", "live");
      views.forEach(function (v) {
        socket.send(JSON.stringify({ subscribe: { metric: v.metric, namespace: v.namespace, range: RANGE } }));
      });
    };
    socket.onmessage = onMessage;
    socket.onclose = function () {
      var wait = Math.min(MAX_BACKOFF, backoff) * (0.75 + Math.random() * 0.5);
      backoff = Math.min(MAX_BACKOFF, backoff * 2);
      setState("offline, retrying in " + Math.round(wait / 1000) + " s", "offline");
      if (!opened) {
        // The handshake was refused: if the session ended, go to the login page.
        fetch(OVERVIEW_URL, { redirect: "manual", credentials: "same-origin" }).then(function (r) {
          if (r.type === "opaqueredirect" || r.status === 302) {
            window.location.href = LOGIN_URL + "?next=" + encodeURIComponent(location.pathname + location.search);
          }
        }).catch(function () {});
      }
      setTimeout(connect, wait);
    };
  }
  connect();
  window.kubemonitorLive = { views: views, socket: function () { return socket; }, formatValue: formatValue,
                             scaleFor: scaleFor };
})();
