/*
 * The emulated visuals: card, bar, line, table and slicer, drawn from data API answers
 * ({columns: [{name, type, format?}], rows: [[...]]}) with Chart.js for the charts.
 *
 * A view owns one grid cell of the page. The report code (emu-report.js) queries the data and
 * calls showData / showError / setLoading; the view reports clicks back through its context:
 *   ctx.formatter            emu-format.js formatter in the report's formatLocale
 *   ctx.onDataPoint(view, point | null)      a bar or line point was (de)selected
 *   ctx.onSlicerChange(view, values)         the slicer's selected values changed
 *   ctx.onVisualClick(view)                  any click inside the visual
 */
(function () {
  "use strict";

  const ns = (window.EmbedEmulator = window.EmbedEmulator || {});

  // Power BI's default theme colours.
  const PALETTE = [
    "#118DFF",
    "#12239E",
    "#E66C37",
    "#6B007B",
    "#E044A7",
    "#744EC2",
    "#D9B300",
    "#D64550",
  ];
  const TEXT = "#252423";
  const MUTED = "#605E5C";
  const GRID = "#E1DFDD";
  const FONT = '"Segoe UI", "Segoe UI Web (West European)", system-ui, -apple-system, ' +
    '"Helvetica Neue", Arial, sans-serif';

  if (window.Chart) {
    const defaults = window.Chart.defaults;
    defaults.font.family = FONT;
    defaults.font.size = 11;
    defaults.color = MUTED;
    defaults.borderColor = GRID;
    defaults.animation = false;
    defaults.responsive = true;
    defaults.maintainAspectRatio = false;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function faded(hex) {
    return hex + "55";
  }

  function numericColumns(columns) {
    return columns.slice(1).filter(function (column) {
      return ns.format.isNumeric(column);
    });
  }

  /** Base view: the frame, loading and error states. */
  function createView(visual, ctx) {
    const kind = visual.type;
    const root = el("section", "visual visual--" + kind);
    root.dataset.visualName = visual.name;
    root.setAttribute("aria-label", visual.title || visual.name);
    const header = el("header", "visual-header");
    const title = el("h2", "visual-title", visual.title || "");
    header.appendChild(title);
    root.appendChild(header); // a card shows its header only to name a failing card
    const body = el("div", "visual-body");
    root.appendChild(body);
    const progress = el("div", "visual-progress");
    progress.setAttribute("aria-hidden", "true");
    root.appendChild(progress);
    body.appendChild(el("div", "visual-skeleton"));

    const view = {
      visual: visual,
      element: root,
      header: header,
      body: body,
      chart: null,
      answer: null,
      selectedIndex: null,
      slicerValues: [],
      setLoading: function (loading) {
        root.classList.toggle("is-loading", !!loading);
        root.setAttribute("aria-busy", loading ? "true" : "false");
      },
      showData: function (answer) {
        view.answer = answer;
        root.classList.remove("has-error");
        RENDERERS[kind] ? RENDERERS[kind](view, answer, ctx) : renderUnknown(view);
      },
      showError: function (problem) {
        view.destroyChart();
        view.answer = null;
        root.classList.add("has-error");
        body.replaceChildren();
        const box = el("div", "visual-error");
        box.appendChild(el("span", "visual-error-icon", "!"));
        const text = el("div", "visual-error-text");
        if (problem.friendly) text.appendChild(el("p", "visual-error-friendly", problem.friendly));
        text.appendChild(
          el("p", "visual-error-message", "Could not load data for this visual: " + problem.code),
        );
        box.appendChild(text);
        body.appendChild(box);
      },
      destroyChart: function () {
        if (view.chart) {
          view.chart.destroy();
          view.chart = null;
        }
      },
      destroy: function () {
        view.destroyChart();
        root.remove();
      },
    };
    root.addEventListener("click", function () {
      ctx.onVisualClick(view);
    });
    return view;
  }

  function renderUnknown(view) {
    view.body.replaceChildren(el("p", "visual-empty", "This visual type is not emulated."));
  }

  function renderCard(view, answer, ctx) {
    const column = answer.columns[0] || { name: "", type: "text" };
    const raw = answer.rows.length ? answer.rows[0][0] : null;
    const box = el("div", "card");
    const value = el("div", "card-value", ctx.formatter.value(column, raw));
    value.setAttribute("data-testid", "card-value");
    box.appendChild(value);
    box.appendChild(el("div", "card-label", view.visual.title || column.name));
    view.body.replaceChildren(box);
  }

  function chartCanvas(view, description) {
    view.destroyChart();
    const holder = el("div", "chart-holder");
    const canvas = el("canvas");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", description);
    holder.appendChild(canvas);
    view.body.replaceChildren(holder);
    return canvas;
  }

  function pointFor(view, index) {
    const answer = view.answer;
    const row = answer.rows[index];
    return {
      index: index,
      categoryColumn: answer.columns[0],
      category: row[0],
      values: answer.columns.slice(1).map(function (column, offset) {
        return { column: column, value: row[offset + 1] };
      }),
    };
  }

  function applyHighlight(view) {
    const chart = view.chart;
    if (!chart) return;
    chart.data.datasets.forEach(function (dataset, seriesIndex) {
      const color = PALETTE[seriesIndex % PALETTE.length];
      const colors = dataset.data.map(function (_value, index) {
        return view.selectedIndex === null || view.selectedIndex === index ? color : faded(color);
      });
      if (chart.config.type === "bar") {
        dataset.backgroundColor = colors;
      } else {
        dataset.pointBackgroundColor = colors;
        dataset.pointBorderColor = colors;
        dataset.pointRadius = dataset.data.map(function (_value, index) {
          return view.selectedIndex === index ? 6 : 3;
        });
      }
    });
    chart.update("none");
  }

  function onChartClick(view, ctx) {
    return function (event, _elements, chart) {
      // Bars are hit where they are drawn; a line's point is the nearest along the x axis.
      const options =
        chart.config.type === "bar" ? { intersect: true } : { intersect: false, axis: "x" };
      const hits = chart.getElementsAtEventForMode(event, "nearest", options, true);
      const index = hits.length ? hits[0].index : null;
      if (index === null && view.selectedIndex === null) return;
      view.selectedIndex = index === view.selectedIndex ? null : index;
      applyHighlight(view);
      ctx.onDataPoint(view, view.selectedIndex === null ? null : pointFor(view, view.selectedIndex));
    };
  }

  function chartConfig(view, answer, ctx, type) {
    const formatter = ctx.formatter;
    const category = answer.columns[0];
    const series = numericColumns(answer.columns);
    const seriesIndexes = series.map(function (column) {
      return answer.columns.indexOf(column);
    });
    const labels = answer.rows.map(function (row) {
      return formatter.value(category, row[0]);
    });
    const datasets = series.map(function (column, i) {
      const color = PALETTE[i % PALETTE.length];
      const dataset = {
        label: column.name,
        data: answer.rows.map(function (row) {
          return row[seriesIndexes[i]];
        }),
        backgroundColor: color,
        borderColor: color,
      };
      if (type === "line") {
        dataset.borderWidth = 2;
        dataset.tension = 0;
        dataset.pointRadius = 2.5;
        dataset.pointHoverRadius = 5;
        dataset.pointHitRadius = 8;
        dataset.fill = false;
      } else {
        dataset.maxBarThickness = 36;
        dataset.borderRadius = 2;
      }
      return dataset;
    });
    const valueColumn = series[0] || { name: "", type: "number" };
    const valueAxis = {
      beginAtZero: true,
      grid: { color: GRID },
      border: { display: false },
      ticks: {
        color: MUTED,
        maxTicksLimit: 6,
        callback: function (value) {
          return formatter.compact(valueColumn, value);
        },
      },
      title: {
        display: true,
        text: series.map((column) => column.name).join(", "),
        color: MUTED,
        font: { size: 11 },
      },
    };
    const horizontal = type === "bar";
    const categoryAxis = {
      grid: { display: false },
      border: { color: GRID },
      // Every bar keeps its label; a line's months thin out to fit.
      ticks: { color: MUTED, autoSkip: !horizontal, autoSkipPadding: 12, maxRotation: 0 },
      title: { display: true, text: category.name, color: MUTED, font: { size: 11 } },
    };
    return {
      type: type,
      data: { labels: labels, datasets: datasets },
      options: {
        indexAxis: horizontal ? "y" : "x",
        layout: { padding: { top: 2, right: 8, bottom: 0, left: 0 } },
        interaction: { mode: "nearest", intersect: horizontal, axis: horizontal ? "y" : "x" },
        onClick: onChartClick(view, ctx),
        onHover: function (event, elements) {
          event.native.target.style.cursor = elements.length ? "pointer" : "default";
        },
        scales: horizontal ? { x: valueAxis, y: categoryAxis } : { x: categoryAxis, y: valueAxis },
        plugins: {
          legend: {
            display: true,
            position: "top",
            align: "start",
            labels: { boxWidth: 10, boxHeight: 10, color: TEXT, padding: 8 },
          },
          tooltip: {
            backgroundColor: "#FFFFFF",
            titleColor: TEXT,
            bodyColor: TEXT,
            borderColor: GRID,
            borderWidth: 1,
            callbacks: {
              label: function (item) {
                return item.dataset.label + ": " + formatter.value(series[item.datasetIndex], item.raw);
              },
            },
          },
        },
      },
    };
  }

  function renderChart(type) {
    return function (view, answer, ctx) {
      const description = (view.visual.title || view.visual.name) + " (" + type + " chart)";
      const canvas = chartCanvas(view, description);
      if (view.selectedIndex !== null && view.selectedIndex >= answer.rows.length) {
        view.selectedIndex = null;
      }
      view.chart = new window.Chart(canvas, chartConfig(view, answer, ctx, type));
      if (view.selectedIndex !== null) applyHighlight(view);
    };
  }

  function tableTotals(answer) {
    if (Array.isArray(answer.totals)) return answer.totals;
    if (answer.rows.length < 2) return null;
    const additive = new Set(["currency", "integer", "number", "decimal"]);
    let any = false;
    const totals = answer.columns.map(function (column, index) {
      if (index === 0 || !additive.has(column.type) || column.additive === false) return null;
      any = true;
      return answer.rows.reduce(function (sum, row) {
        return typeof row[index] === "number" ? sum + row[index] : sum;
      }, 0);
    });
    return any ? totals : null;
  }

  function renderTable(view, answer, ctx) {
    const formatter = ctx.formatter;
    const scroll = el("div", "table-scroll");
    const table = el("table", "data-table");
    const head = el("thead");
    const headRow = el("tr");
    answer.columns.forEach(function (column) {
      const th = el("th", formatter.isNumeric(column) ? "num" : "", column.name);
      th.scope = "col";
      headRow.appendChild(th);
    });
    head.appendChild(headRow);
    table.appendChild(head);
    const tbody = el("tbody");
    answer.rows.forEach(function (row) {
      const tr = el("tr");
      answer.columns.forEach(function (column, index) {
        tr.appendChild(
          el("td", formatter.isNumeric(column) ? "num" : "", formatter.value(column, row[index])),
        );
      });
      tbody.appendChild(tr);
    });
    table.appendChild(tbody);
    const totals = tableTotals(answer);
    if (totals) {
      const foot = el("tfoot");
      const tr = el("tr");
      answer.columns.forEach(function (column, index) {
        const cell = el(index === 0 ? "th" : "td", formatter.isNumeric(column) ? "num" : "");
        if (index === 0) cell.textContent = "Total";
        else if (totals[index] !== null && totals[index] !== undefined)
          cell.textContent = formatter.value(column, totals[index]);
        tr.appendChild(cell);
      });
      foot.appendChild(tr);
      table.appendChild(foot);
    }
    if (!answer.rows.length) {
      scroll.appendChild(el("p", "visual-empty", "No data"));
    }
    scroll.appendChild(table);
    view.body.replaceChildren(scroll);
  }

  function valueKey(value) {
    return JSON.stringify(value);
  }

  function renderSlicer(view, answer, ctx) {
    const formatter = ctx.formatter;
    const column = answer.columns[0] || { name: "", type: "text" };
    const selected = new Set(view.slicerValues.map(valueKey));
    const values = answer.rows.map(function (row) {
      return row[0];
    });
    // Keep selected values that the current data no longer lists, as Power BI does.
    view.slicerValues.forEach(function (value) {
      if (!values.some((candidate) => valueKey(candidate) === valueKey(value))) values.push(value);
    });

    let clear = view.header.querySelector(".slicer-clear");
    if (!clear) {
      clear = el("button", "slicer-clear", "Clear");
      clear.type = "button";
      clear.title = "Clear selections";
      clear.addEventListener("click", function () {
        if (!view.slicerValues.length) return;
        view.slicerValues = [];
        view.body.querySelectorAll("input[type=checkbox]").forEach((box) => (box.checked = false));
        clear.hidden = true;
        ctx.onSlicerChange(view, []);
      });
      view.header.appendChild(clear);
    }
    clear.hidden = selected.size === 0;

    // A slicer much wider than tall lists its values in rows, as Power BI's horizontal slicer.
    const layout = view.visual.layout || {};
    const horizontal = layout.width >= 2 * layout.height;
    const list = el("ul", horizontal ? "slicer-list slicer-list--horizontal" : "slicer-list");
    list.setAttribute("aria-label", view.visual.title || column.name);
    values.forEach(function (value) {
      const item = el("li", "slicer-item");
      const label = el("label");
      const box = el("input");
      box.type = "checkbox";
      box.checked = selected.has(valueKey(value));
      box.addEventListener("change", function () {
        const key = valueKey(value);
        const others = view.slicerValues.filter((candidate) => valueKey(candidate) !== key);
        view.slicerValues = box.checked ? others.concat([value]) : others;
        clear.hidden = view.slicerValues.length === 0;
        ctx.onSlicerChange(view, view.slicerValues.slice());
      });
      label.appendChild(box);
      label.appendChild(el("span", "slicer-text", formatter.value(column, value)));
      item.appendChild(label);
      list.appendChild(item);
    });
    view.body.replaceChildren(list);
  }

  const RENDERERS = {
    card: renderCard,
    bar: renderChart("bar"),
    line: renderChart("line"),
    table: renderTable,
    slicer: renderSlicer,
  };

  ns.visuals = { createView: createView, el: el };
})();
