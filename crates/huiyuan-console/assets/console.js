// Huiyuan console: draws the overview charts (ECharts, vendored) and keeps the member's QR code
// fresh. Everything else is plain HTML forms.
(function () {
  "use strict";

  function drawCharts() {
    var box = document.getElementById("charts");
    if (!box || typeof echarts === "undefined") return;
    var k = JSON.parse(box.dataset.kpis);
    var l = JSON.parse(box.dataset.labels);
    var days = k.buckets.map(function (b) { return b.start; });
    var col = function (name) { return k.buckets.map(function (b) { return b[name]; }); };
    var yuan = function (name) { return k.buckets.map(function (b) { return b[name] == null ? null : b[name] / 100; }); };
    var base = function (title) {
      return { title: { text: title, left: 10, top: 6, textStyle: { fontSize: 14 } }, tooltip: { trigger: "axis" },
        legend: { top: 6, right: 10 }, grid: { left: 56, right: 56, top: 44, bottom: 30 },
        xAxis: { type: "category", data: days } };
    };
    var charts = [];
    var put = function (id, option) {
      var el = document.getElementById(id);
      if (!el) return;
      var c = echarts.init(el, null, { renderer: "svg" });
      c.setOption(option);
      charts.push(c);
    };
    put("chart-growth", Object.assign(base(l.growth), {
      yAxis: [{ type: "value" }, { type: "value" }],
      series: [{ name: l.members, type: "line", data: col("members"), smooth: true, yAxisIndex: 0 },
               { name: l.new_members, type: "bar", data: col("new_members"), yAxisIndex: 1 },
               { name: l.active, type: "line", data: col("active_members"), yAxisIndex: 0 }] }));
    put("chart-sales", Object.assign(base(l.sales), {
      yAxis: [{ type: "value" }, { type: "value" }],
      series: [{ name: l.revenue, type: "bar", data: yuan("revenue"), yAxisIndex: 0 },
               { name: l.aov, type: "line", data: yuan("average_order_value"), yAxisIndex: 1 }] }));
    put("chart-points", Object.assign(base(l.points), {
      yAxis: { type: "value" },
      series: [{ name: l.issued, type: "bar", data: col("points_issued") },
               { name: l.redeemed, type: "bar", data: col("points_redeemed") },
               { name: l.expired, type: "bar", data: col("points_expired") }] }));
    put("chart-tiers", {
      title: { text: l.tiers, left: 10, top: 6, textStyle: { fontSize: 14 } }, tooltip: { trigger: "item" },
      series: [{ type: "pie", radius: ["35%", "65%"], top: 20,
        data: k.tiers.map(function (t) { return { name: (box.dataset.lang === "en" && t.name_en) || t.name, value: t.members }; }) }] });
    box.dataset.drawn = String(charts.length);
    window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
  }

  function refreshCode() {
    var img = document.getElementById("member-qr");
    if (!img) return;
    var every = Number(img.dataset.refreshSeconds || 45) * 1000;
    setInterval(function () { img.src = "/m/code.svg?t=" + Date.now(); }, every);
  }

  document.addEventListener("DOMContentLoaded", function () { drawCharts(); refreshCode(); });
})();
