/* kindstride: charts of kilometres per day, drawn with uPlot (static/vendor/uplot, MIT).
 * Each div[data-ks-chart] carries its data as JSON (the policy allows no inline script):
 *   {kind: "bars" | "cumulative", series, day (the word), labels: [short day], dates: [day], values: [km],
 *    texts: [km as text]}
 * Days and kilometres come formatted in the site's language from the server; the script only draws. The
 * table of the same figures stays on the page: once the chart is drawn it is folded into its <details>. */
(function () {
  "use strict";
  if (typeof window.uPlot !== "function") {
    return; // the library did not load: the table shows the figures
  }
  var lang = document.documentElement.lang || "en";
  var numbers;
  try {
    numbers = new Intl.NumberFormat(lang, {maximumFractionDigits: 1});
  } catch (error) {
    numbers = new Intl.NumberFormat("en", {maximumFractionDigits: 1});
  }

  function cssVar(name, fallback) {
    var value = window.getComputedStyle(document.documentElement).getPropertyValue(name);
    return (value && value.trim()) || fallback;
  }

  function draw(container) {
    var data;
    try {
      data = JSON.parse(container.getAttribute("data-ks-chart"));
    } catch (error) {
      return null;
    }
    var count = data.values.length;
    if (!count) {
      return null;
    }
    var xs = [];
    for (var i = 0; i < count; i++) {
      xs.push(i);
    }
    var primary = cssVar("--ks-primary", "#1f5fbf");
    var bars = data.kind === "bars";
    var series = {
      label: data.series,
      stroke: primary,
      width: bars ? 0 : 2,
      fill: bars ? primary : (/^#[0-9a-f]{6}$/i.test(primary) ? primary + "33" : "rgba(31, 95, 191, .2)"),
      points: {show: !bars && count < 40},
      value: function (u, value, seriesIndex, index) {
        return index == null ? "" : data.texts[index];
      }
    };
    if (bars) {
      series.paths = window.uPlot.paths.bars({size: [0.7, 48]});
    }
    var options = {
      width: Math.max(container.clientWidth, 200),
      height: 220,
      scales: {
        x: {time: false, range: function () { return [-0.5, count - 0.5]; }},
        y: {range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; }}
      },
      axes: [
        {
          space: 60,
          incrs: [1, 2, 3, 7, 14, 28, 56, 112],
          values: function (u, splits) {
            return splits.map(function (v) { return Number.isInteger(v) && data.labels[v] ? data.labels[v] : ""; });
          }
        },
        {
          size: 56,
          values: function (u, splits) {
            return splits.map(function (v) { return numbers.format(v); });
          }
        }
      ],
      legend: {show: true},
      cursor: {drag: {x: false, y: false}},
      series: [
        {
          label: data.day,
          value: function (u, value, seriesIndex, index) { return index == null ? "" : data.dates[index]; }
        },
        series
      ]
    };
    var chart = new window.uPlot(options, [xs, data.values], container);
    container.classList.add("ks-chart-drawn");
    var figure = container.closest("figure");
    var table = figure && figure.querySelector("details[data-ks-chart-table]");
    if (table) {
      table.open = false;
    }
    return chart;
  }

  var charts = [];
  Array.prototype.forEach.call(document.querySelectorAll("[data-ks-chart]"), function (container) {
    var chart = draw(container);
    if (chart) {
      charts.push({chart: chart, container: container});
    }
  });
  var pending = false;
  window.addEventListener("resize", function () {
    if (pending) {
      return;
    }
    pending = true;
    window.requestAnimationFrame(function () {
      pending = false;
      charts.forEach(function (item) {
        item.chart.setSize({width: Math.max(item.container.clientWidth, 200), height: 220});
      });
    });
  });
})();
