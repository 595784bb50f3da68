// Admin → Capacities → a capacity: the bar chart of hours running per day, with the estimated
// cost as a line on its own axis. The figures come from the page's
// <script type='application/json' id='capacity-chart-data'>, the same ones as the table under
// the chart, so the page needs no inline script and reads the same without JavaScript.
(function () {
  'use strict';

  function draw() {
    const canvas = document.getElementById('capacity-chart');
    const source = document.getElementById('capacity-chart-data');
    // Chart.js missing (blocked, or node_modules not installed): the table still has it all.
    if (!canvas || !source || typeof window.Chart !== 'function') return;
    const figures = JSON.parse(source.textContent || '{}');
    new window.Chart(canvas, {
      type: 'bar',
      data: {
        labels: figures.labels,
        datasets: [
          { label: figures.hoursLabel, data: figures.hours, yAxisID: 'hours' },
          {
            type: 'line',
            label: figures.costLabel,
            data: figures.cost,
            yAxisID: 'cost',
            spanGaps: false,
          },
        ],
      },
      options: {
        responsive: true,
        animation: false,
        interaction: { mode: 'index', intersect: false },
        scales: {
          hours: {
            position: 'left',
            beginAtZero: true,
            suggestedMax: 24,
            title: { display: true, text: figures.hoursLabel },
          },
          cost: {
            position: 'right',
            beginAtZero: true,
            // One set of grid lines is enough to read both axes.
            grid: { drawOnChartArea: false },
            title: { display: true, text: figures.costLabel },
          },
        },
      },
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', draw);
  } else {
    draw();
  }
})();
