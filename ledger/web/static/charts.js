// Draws each chart of the page from its JSON block with ECharts' SVG renderer (the figures are in the table beside it).
// A chart's block: {"option": <ECharts option>, "links": [[url per data point] per series] or null}; a click on a
// bar, segment or point with a link opens the calls behind it.
(function () {
  "use strict";
  function draw() {
    document.querySelectorAll("[data-chart]").forEach(function (box) {
      var block = document.getElementById(box.getAttribute("data-chart"));
      if (!block || typeof echarts === "undefined") return;
      var data = JSON.parse(block.textContent);
      var chart = echarts.init(box, null, { renderer: "svg" });
      chart.setOption(data.option);
      box.setAttribute("data-drawn", "true");
      var links = data.links;
      if (links) {
        chart.on("click", function (point) {
          var series = links[point.seriesIndex];
          var target = series && series[point.dataIndex];
          if (target && target.charAt(0) === "/") window.location.assign(target);
        });
      }
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
