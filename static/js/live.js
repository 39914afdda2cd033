/* kubemonitor live views: one websocket per page, a subscription per view on the page,
 * uPlot charts when the library is present, tables always. Reconnects with backoff. */
(function () {
  "use strict";

  var views = Array.prototype.slice.call(document.querySelectorAll("[data-live-view]"));
  var stateEl = document.getElementById("conn-state");
  var degradedEl = document.getElementById("degraded");
  var degradedMsg = document.getElementById("degraded-message");
  var COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
                "#ea580c", "#4f46e5", "#0d9488", "#b91c1c"];

  // -- the picker works without JavaScript (GET /web/go); with it, no round trip
  var picker = document.getElementById("picker");
  if (picker) {
    picker.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var metric = document.getElementById("picker-metric").value;
      var ns = document.getElementById("picker-namespace").value;
      window.location.href = "/web/stats/" + metric + (ns && ns !== "all" ? "/" + ns : "");
    });
  }

  function setState(text, cls) {
    if (!stateEl) return;
    stateEl.textContent = text;
    stateEl.className = "state-" + cls;
  }

  function formatValue(value, unit) {
    if (value === null || value === undefined) return "–";
    if (unit === "bytes") {
      var units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"], i = 0, v = Math.abs(value);
      while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
      return (value < 0 ? "-" : "") + v.toFixed(i ? 2 : 0) + " " + units[i];
    }
    var digits = Math.abs(value) >= 100 ? 1 : (Math.abs(value) >= 1 ? 2 : 4);
    return Number(value).toFixed(digits) + (unit ? " " + unit : "");
  }

  // Axis ticks: short, without the unit (the heading names it), except bytes.
  function axisValue(value, unit) {
    if (value === null || value === undefined) return "";
    if (unit === "bytes") return formatValue(value, unit);
    var a = Math.abs(value);
    if (a >= 1e9) return (value / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (value / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (value / 1e3).toFixed(0) + "k";
    return String(Math.round(value * 1000) / 1000);
  }

  function cell(text, cls) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : text;
    if (cls) td.className = cls;
    return td;
  }

  // -- charts ---------------------------------------------------------------------
  function chartData(series) {
    var names = Object.keys(series).sort();
    var xsSet = {};
    names.forEach(function (n) { series[n].forEach(function (p) { xsSet[p[0]] = true; }); });
    var xs = Object.keys(xsSet).map(Number).sort(function (a, b) { return a - b; });
    var index = {};
    xs.forEach(function (x, i) { index[x] = i; });
    var data = [xs.map(function (x) { return x / 1000; })];
    names.forEach(function (n) {
      var ys = new Array(xs.length).fill(null);
      series[n].forEach(function (p) { ys[index[p[0]]] = p[1]; });
      data.push(ys);
    });
    return { names: names, data: data };
  }

  function drawChart(view, snapshot) {
    var holder = view.el.querySelector("[data-chart]");
    if (!holder) return;
    if (typeof window.uPlot === "undefined") {
      holder.classList.add("chart-missing");
      holder.textContent = "Chart unavailable: the uPlot asset is missing on the server (reinstall kubemonitor).";
      return;
    }
    var cd = chartData(snapshot.series || {});
    var signature = cd.names.join("\u0000");
    var width = Math.max(300, holder.clientWidth || 600);
    if (view.chart && view.signature === signature) {
      view.chart.setData(cd.data);
      return;
    }
    if (view.chart) view.chart.destroy();
    holder.textContent = "";
    var unit = view.unit;
    view.chart = new window.uPlot({
      width: width,
      height: holder.classList.contains("small") ? 180 : 320,
      scales: { x: { time: true } },
      series: [{}].concat(cd.names.map(function (n, i) {
        return { label: n || "(none)", stroke: COLORS[i % COLORS.length], width: 1.5,
                 value: function (u, v) { return formatValue(v, unit); } };
      })),
      axes: [{}, { size: unit === "bytes" ? 90 : 70, values: function (u, vals) { return vals.map(function (v) { return axisValue(v, unit); }); } }],
    }, cd.data, holder);
    view.signature = signature;
  }

  // -- tables ---------------------------------------------------------------------
  function drawLatest(view, snapshot) {
    var body = view.el.querySelector("[data-latest]");
    if (!body) return;
    var rows = snapshot.latest || [];
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      [r.time, r.namespace_name, r.pod_name, r.container_name, r.nodename].forEach(function (t) { tr.appendChild(cell(t)); });
      tr.appendChild(cell(formatValue(r.value, view.unit), "num"));
      frag.appendChild(tr);
    });
    if (!rows.length) {
      var tr = document.createElement("tr");
      tr.className = "empty";
      var td = cell("No points in the last hour.");
      td.colSpan = 6;
      tr.appendChild(td);
      frag.appendChild(tr);
    }
    body.textContent = "";
    body.appendChild(frag);
  }

  function drawOverview(view, snapshot) {
    var body = view.el.querySelector("[data-namespaces]");
    var totalEl = view.el.querySelector("[data-total]");
    var series = snapshot.series || {};
    var total = 0;
    var frag = document.createDocumentFragment();
    Object.keys(series).sort().forEach(function (ns) {
      var pts = series[ns];
      if (!pts.length) return;
      var v = pts[pts.length - 1][1];
      total += v;
      var tr = document.createElement("tr");
      var td = document.createElement("td");
      var a = document.createElement("a");
      a.href = "/web/stats/" + view.metric + "/" + ns;
      a.textContent = ns;
      td.appendChild(a);
      tr.appendChild(td);
      tr.appendChild(cell(formatValue(v, view.unit), "num"));
      frag.appendChild(tr);
    });
    if (body) { body.textContent = ""; body.appendChild(frag); }
    if (totalEl) totalEl.textContent = formatValue(total, view.unit);
  }

  function render(view, snapshot) {
    if (!snapshot) return;
    view.snapshot = snapshot;
    var when = view.el.querySelector(".last-updated");
    if (when) when.textContent = snapshot.polled_at;
    try { drawChart(view, snapshot); } catch (e) { console.error("chart", e); }
    if (view.kind === "overview") drawOverview(view, snapshot); else drawLatest(view, snapshot);
  }

  views = views.map(function (el) {
    var view = { el: el, kind: el.getAttribute("data-live-view"), metric: el.getAttribute("data-metric"),
                 namespace: el.getAttribute("data-namespace"), unit: el.getAttribute("data-unit") || "" };
    var initial = el.querySelector("[data-snapshot]");
    if (initial) {
      try { render(view, JSON.parse(initial.textContent)); } catch (e) { console.error("initial snapshot", e); }
    }
    return view;
  });

  window.addEventListener("resize", function () {
    views.forEach(function (v) {
      var holder = v.el.querySelector("[data-chart]");
      if (v.chart && holder) v.chart.setSize({ width: Math.max(300, holder.clientWidth), height: v.chart.height });
    });
  });

  // -- the websocket --------------------------------------------------------------
  var backoff = 1000, MAX_BACKOFF = 30000, socket = null, everOpened = false;

  function onMessage(ev) {
    var msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    if (msg.type === "snapshot") {
      views.forEach(function (v) { if (v.metric === msg.metric && v.namespace === msg.namespace) render(v, msg); });
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
    socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/web/live");
    socket.onopen = function () {
      opened = everOpened = true;
      backoff = 1000;
      setState("live", "live");
      views.forEach(function (v) {
        socket.send(JSON.stringify({ subscribe: { metric: v.metric, namespace: v.namespace } }));
      });
    };
    socket.onmessage = onMessage;
    socket.onclose = function () {
      var wait = Math.min(MAX_BACKOFF, backoff) * (0.75 + Math.random() * 0.5);
      backoff = Math.min(MAX_BACKOFF, backoff * 2);
      setState("offline, retrying in " + Math.round(wait / 1000) + " s", "offline");
      if (!opened) {
        // The handshake was refused: if the session ended, go to the login page.
        fetch("/web/stats/index", { redirect: "manual", credentials: "same-origin" }).then(function (r) {
          if (r.type === "opaqueredirect" || r.status === 302) {
            window.location.href = "/web/login?next=" + encodeURIComponent(location.pathname);
          }
        }).catch(function () {});
      }
      setTimeout(connect, wait);
    };
  }
  connect();
  window.kubemonitorLive = { views: views, socket: function () { return socket; } };
})();
