// Admin → Health: two live line charts fed by polling /admin/health/figures. The server sends
// totals since the instance started; rates are the difference between two polls. Settings come
// from <script type='application/json' id='health-chart-data'>, so the page has no inline script
// and reads the same without JavaScript (the tables hold the figures).
(function () {
  'use strict';

  function rate(now, before, seconds) {
    if (before === undefined || seconds <= 0) return null;
    return Math.max(0, (now - before) / seconds);
  }

  function lineChart(canvas, datasets) {
    return new window.Chart(canvas, {
      type: 'line',
      data: { labels: [], datasets: datasets },
      options: {
        responsive: true,
        animation: false,
        interaction: { mode: 'index', intersect: false },
        scales: { y: { beginAtZero: true } },
      },
    });
  }

  function push(chart, label, values, limit) {
    chart.data.labels.push(label);
    values.forEach(function (value, index) {
      chart.data.datasets[index].data.push(value);
    });
    while (chart.data.labels.length > limit) {
      chart.data.labels.shift();
      chart.data.datasets.forEach(function (dataset) { dataset.data.shift(); });
    }
    chart.update();
  }

  function start() {
    const source = document.getElementById('health-chart-data');
    const requestsCanvas = document.getElementById('health-chart-requests');
    const loadCanvas = document.getElementById('health-chart-load');
    // Chart.js missing (blocked, or node_modules not installed): the tables still have it all.
    if (!source || !requestsCanvas || !loadCanvas || typeof window.Chart !== 'function') return;
    const settings = JSON.parse(source.textContent || '{}');
    const labels = settings.labels || {};
    const requests = lineChart(requestsCanvas, [
      { label: labels.requestRate, data: [] },
      { label: labels.p99, data: [] },
    ]);
    const load = lineChart(loadCanvas, [
      { label: labels.tokenRate, data: [] },
      { label: labels.mintRate, data: [] },
      { label: labels.openViewers, data: [] },
      { label: labels.pool, data: [] },
    ]);
    let previous = null;

    function poll() {
      fetch(settings.figuresUrl, { headers: { Accept: 'application/json' }, credentials: 'same-origin' })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (answer) {
          if (!answer) return;
          const figures = answer.figures;
          const now = performance.now() / 1000;
          const before = previous || {};
          const seconds = previous ? now - previous.at : 0;
          const label = new Date().toLocaleTimeString();
          push(requests, label, [
            rate(figures.requests, before.requests, seconds),
            figures.request_p99 === null ? null : Math.round(figures.request_p99 * 1000),
          ], settings.points);
          push(load, label, [
            rate(figures.token_requests, before.token_requests, seconds),
            rate(figures.generate_token_calls, before.generate_token_calls, seconds),
            figures.open_viewers,
            figures.pool_checked_out,
          ], settings.points);
          previous = Object.assign({ at: now }, figures);
        })
        .catch(function () { /* the next poll tries again */ });
    }

    poll();
    window.setInterval(poll, (settings.pollSeconds || 5) * 1000);
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
