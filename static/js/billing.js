/* kubemonitor billing page: the stacked daily bar chart per group (uPlot, served by the
 * app). Each group's bar sits on the ones before it: series carry running sums and are
 * drawn from the tallest down, so each visible band is one group's share. */
(function () {
  "use strict";
  var holder = document.querySelector("[data-billing-chart]");
  var source = document.querySelector("[data-daily]");
  if (!holder || !source) return;
  var daily;
  try { daily = JSON.parse(source.textContent); } catch (e) { return; }
  if (!daily || !daily.groups || !Object.keys(daily.groups).length) {
    holder.textContent = "No rolled-up usage to chart for this period yet.";
    holder.classList.add("chart-missing");
    return;
  }
  if (typeof window.uPlot === "undefined") {
    holder.textContent = "Chart unavailable: the uPlot asset is missing on the server.";
    holder.classList.add("chart-missing");
    return;
  }
  var COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];
  var names = Object.keys(daily.groups).sort();
  var xs = daily.days.map(function (d) { return Date.parse(d + "T12:00:00Z") / 1000; });
  var running = xs.map(function () { return 0; });
  var stacked = names.map(function (n) {
    return daily.groups[n].map(function (v, i) { running[i] += v; return running[i]; });
  });
  var order = names.map(function (n, i) { return i; }).reverse();  // tallest first
  var bars = window.uPlot.paths.bars({ size: [0.7, 40] });
  var style = window.getComputedStyle(holder);
  var width = Math.max(200, holder.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight));
  new window.uPlot({
    width: width, height: 260,
    scales: { x: { time: true } },
    axes: [{}, { label: daily.measure || "", size: 60 }],
    series: [{}].concat(order.map(function (i) {
      return { label: names[i], fill: COLORS[i % COLORS.length], stroke: COLORS[i % COLORS.length], paths: bars, points: { show: false },
               value: function (u, v, si, di) { return di == null ? "" : String(daily.groups[names[i]][di]); } };
    })),
  }, [xs].concat(order.map(function (i) { return stacked[i]; })), holder);
})();
