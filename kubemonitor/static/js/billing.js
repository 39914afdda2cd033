/* kubemonitor billing page: the stacked daily bar chart per group (uPlot, served by the
 * app). Each group's bar sits on the ones before it: series carry running sums and are
 * drawn from the tallest down, so each visible band is one group's share. A bar is a
 * day: its tick and its hover say the day (never an hour), and a day without cost
 * draws nothing. */
(function () {
  "use strict";
  var holder = document.querySelector("[data-billing-chart]");
  var source = document.querySelector("[data-daily]");
  if (!holder || !source) return;
  var daily;
  try { daily = JSON.parse(source.textContent); } catch (e) { return; }
  function explain(text) {
    holder.textContent = text;
    holder.classList.add("chart-missing");
  }
  if (!daily) { explain("No daily chart: InfluxDB did not answer for it. The table above is complete."); return; }
  if (!daily.groups || !Object.keys(daily.groups).length) {
    explain("Nothing to chart: no usage was collected in this period" +
            (holder.getAttribute("data-filtered") ? " for these rows." : "."));
    return;
  }
  if (typeof window.uPlot === "undefined") { explain("Chart unavailable: the uPlot asset is missing on the server."); return; }
  var COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];
  var names = Object.keys(daily.groups).sort();
  var label = function (key) { return (daily.names && daily.names[key]) || key; };
  var xs = daily.days.map(function (d) { return Date.parse(d + "T12:00:00Z") / 1000; });
  var running = xs.map(function () { return 0; });
  var stacked = names.map(function (n) {
    return daily.groups[n].map(function (v, i) { running[i] += v; return v ? running[i] : null; });
  });
  var order = names.map(function (n, i) { return i; }).reverse();  // tallest first
  var bars = window.uPlot.paths.bars({ size: [0.7, 40] });
  var style = window.getComputedStyle(holder);
  var width = Math.max(200, holder.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight));
  var dayOfMonth = function (i) { return String(Number(daily.days[i].slice(8, 10))); };
  window.kubemonitorBilling = { daily: daily };
  window.kubemonitorBilling.chart = new window.uPlot({
    width: width, height: 260,
    scales: { x: { time: false, range: [-0.5, xs.length - 0.5] } },
    axes: [{ splits: function () { return xs.map(function (x, i) { return i; }); },
             values: function (u, splits) {
               var every = Math.ceil(splits.length / Math.max(1, Math.floor(u.bbox.width / devicePixelRatio / 22)));
               return splits.map(function (i) { return i % every === 0 ? dayOfMonth(i) : ""; });
             } },
           { label: daily.measure || "", size: 60 }],
    series: [{ label: "Day", value: function (u, v) { return v == null ? "" : daily.days[v]; } }].concat(order.map(function (i) {
      return { label: label(names[i]), fill: COLORS[i % COLORS.length], stroke: COLORS[i % COLORS.length], paths: bars,
               points: { show: false },
               value: function (u, v, si, di) { return di == null ? "" : String(daily.groups[names[i]][di]); } };
    })),
  }, [xs.map(function (x, i) { return i; })].concat(order.map(function (i) { return stacked[i]; })), holder);
})();
