// A click on a point of a plot opens its run's page (the point's customdata[0]).
document.querySelectorAll(".js-plotly-plot").forEach(function (plot) {
  plot.on("plotly_click", function (event) {
    var point = event.points && event.points[0];
    if (point && point.customdata && point.customdata[0]) {
      window.location.href = point.customdata[0];
    }
  });
});
