// pgmon's page behaviour: draws charts with uPlot (stacked activity with drag-to-zoom and
// click-for-slice, sparklines, statement, growth and lock charts) and refreshes live ones;
// htmx swaps fragments, and this script (re)binds charts after each swap.
(function () {
  "use strict";

  const palette = ["#2457c5", "#e07b00", "#2a9d4b", "#c23b3b", "#7b4bc2", "#0f8c8c", "#b5a000", "#8c5a2b", "#d14fa3", "#5b6475"];
  // Wait event types get stable colours, as in Performance Insights.
  const fixedColours = { CPU: "#2a9d4b", Lock: "#c23b3b", LWLock: "#e07b00", IO: "#2457c5", IPC: "#7b4bc2", Timeout: "#b5a000", Client: "#0f8c8c", Activity: "#8c5a2b", BufferPin: "#d14fa3", Extension: "#5b6475" };

  function colourFor(series, index) {
    if (series.other_series) return "#9aa1ad";
    return fixedColours[series.name] || palette[index % palette.length];
  }

  // What a legend calls a series: the statement's text when stacked by query, "other (N)" for
  // the sum of the series beyond the top ones.
  function seriesLabel(series, length) {
    if (series.other_series) return "other (" + series.other_series + " series)";
    const text = series.query || series.name;
    return text.length > length ? text.slice(0, length - 1) + "…" : text;
  }

  // Stacked by query: each statement's text, linking to its page.
  function statementLegend(container, reply) {
    const list = document.createElement("ol");
    list.className = "series-legend";
    reply.series.forEach((series, i) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colourFor(series, i);
      item.appendChild(swatch);
      if (series.other_series) {
        item.appendChild(document.createTextNode(seriesLabel(series, 200)));
      } else {
        const link = document.createElement("a");
        link.href = container.dataset.statementUrl + encodeURIComponent(series.name);
        link.title = series.query || "query id " + series.name;
        link.textContent = series.query ? seriesLabel(series, 120) : "query id " + series.name + " (text not collected yet)";
        item.appendChild(link);
      }
      list.appendChild(item);
    });
    container.appendChild(list);
  }

  function showMessage(container, className, text) {
    container.innerHTML = "";
    const p = document.createElement("p");
    p.className = className;
    p.textContent = text;
    container.appendChild(p);
  }

  async function fetchJson(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(body.error || response.statusText);
    }
    return body;
  }

  function stack(series) {
    // Cumulative sums so each band sits on the ones below it; gaps (no sample) stay gaps.
    const stacked = [];
    let below = null;
    for (const s of series) {
      const values = s.values.map((v, i) => (v === null ? null : v + (below && below[i] !== null ? below[i] : 0)));
      stacked.push(values);
      below = values;
    }
    return stacked;
  }

  function chartWidth(container) {
    return Math.max(container.clientWidth - 16, 300);
  }

  // The activity chart: stacked bands, a max_connections line, drag to zoom, click for a slice.
  function drawActivity(container, reply) {
    container.innerHTML = "";
    if (reply.series.length === 0) {
      const hasSamples = reply.samples.some((n) => n > 0);
      showMessage(container, "empty", hasSamples
        ? "No active sessions in this range."
        : "No samples in this range: is the collector running for this target?");
      return;
    }
    const xs = reply.bucket_starts_us.map((us) => us / 1e6);
    const stacked = stack(reply.series);
    // Draw the top band first so lower bands paint over it.
    const order = reply.series.map((_, i) => i).reverse();
    const data = [xs].concat(order.map((i) => stacked[i]));
    const uSeries = [{}].concat(order.map((i) => ({
      label: seriesLabel(reply.series[i], 40),
      stroke: colourFor(reply.series[i], i),
      fill: colourFor(reply.series[i], i) + "cc",
      width: 1,
      points: { show: false },
      value: (u, v, si, idx) => {
        const raw = reply.series[order[si - 1]].values[idx];
        return raw === null || raw === undefined ? "–" : raw.toFixed(2);
      },
    })));
    const maxConnections = Number(container.dataset.maxConnections || 0);
    if (maxConnections > 0) {
      data.push(xs.map(() => maxConnections));
      uSeries.push({ label: "max_connections", stroke: "#1d2433", dash: [6, 4], width: 1, points: { show: false } });
    }
    const step = reply.step_us / 1e6;
    // Restarts, setting changes and alerts as vertical lines, once their lists have come.
    let changes = [];
    let alerts = [];
    const markers = () => changes.concat(alerts);
    const topOfLoad = Math.max(0, ...stacked[stacked.length - 1].filter((v) => v !== null));
    const chart = new uPlot({
      width: chartWidth(container),
      height: 360,
      series: uSeries,
      // Scaled to the load, so the max_connections line shows only when the load nears it.
      scales: { x: { time: true }, y: { range: () => [0, Math.max(1, topOfLoad * 1.15)] } },
      axes: [{}, { label: "average active sessions" }],
      legend: { live: true },
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: {
        draw: [(u) => drawMarkers(u, markers())],
        setSelect: [(u) => {
          if (u.select.width < 4) return;
          const from = Math.floor(u.posToVal(u.select.left, "x"));
          const to = Math.ceil(u.posToVal(u.select.left + u.select.width, "x"));
          u.setSelect({ width: 0 }, false);
          if (to - from < 2) return;
          window.location.href = container.dataset.zoomUrl + "&from=" + from + "&to=" + to;
        }],
      },
    }, data, container);
    chart.over.addEventListener("click", () => {
      const idx = chart.cursor.idx;
      if (idx === null || idx === undefined) return;
      const from = xs[idx];
      loadSlice(container, Math.floor(from), Math.ceil(from + step));
    });
    if (reply.by === "query_id" && container.dataset.statementUrl) {
      statementLegend(container, reply);
    }
    if (container.dataset.changesUrl) {
      fetchJson(container.dataset.changesUrl).then((reply) => {
        changes = reply.changes;
        chart.redraw(false);
        changeList(container, markers());
      }).catch(() => {});
    }
    if (container.dataset.alertsUrl) {
      fetchJson(container.dataset.alertsUrl).then((reply) => {
        alerts = reply.events.map((event) => ({ at_us: event.at_us, alert: event }));
        chart.redraw(false);
        changeList(container, markers());
      }).catch(() => {});
    }
  }

  // The colour of a marker: red for a restart, orange for an alert firing, green for one
  // resolving, purple for any other change.
  function markerColour(marker) {
    if (marker.alert) return marker.alert.kind === "resolved" ? "#27ae60" : "#e67e22";
    return marker.name === "start_time" ? "#c0392b" : "#8e44ad";
  }

  // A vertical line at each change and alert.
  function drawMarkers(u, changes) {
    const ctx = u.ctx;
    ctx.save();
    ctx.lineWidth = 2;
    for (const change of changes) {
      const x = u.valToPos(change.at_us / 1e6, "x", true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.strokeStyle = markerColour(change);
      ctx.setLineDash([4, 3]);
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
    }
    ctx.restore();
  }

  function describeChange(change) {
    const when = new Date(change.at_us / 1000).toISOString().replace("T", " ").slice(0, 19);
    if (change.alert) return when + " alert " + change.alert.rule + " " + change.alert.kind + ": " + change.alert.summary;
    if (change.name === "start_time") return when + " restart";
    const absent = { setting: "default", extension: "not installed" }[change.category] || "–";
    const from = change.old_value === null ? absent : change.old_value;
    const to = change.new_value === null ? absent : change.new_value;
    return when + " " + change.category + " " + change.name + ": " + from + " → " + to + (change.pending_restart ? " (pending restart)" : "");
  }

  // The changes and alerts of the chart's window, listed under it in time order.
  function changeList(container, unsorted) {
    const changes = unsorted.slice().sort((a, b) => a.at_us - b.at_us);
    const existing = container.parentNode.querySelector("ul.changes");
    if (existing) existing.remove();
    if (changes.length === 0) return;
    const list = document.createElement("ul");
    list.className = "changes";
    for (const change of changes) {
      const item = document.createElement("li");
      item.textContent = describeChange(change);
      list.appendChild(item);
    }
    container.after(list);
  }

  function loadSlice(container, from, to) {
    const target = document.getElementById("slice");
    if (!target || !window.htmx) return;
    htmx.ajax("GET", container.dataset.sliceUrl + "?from=" + from + "&to=" + to, { target: "#slice", swap: "innerHTML" });
  }

  // A small line without axes, for tables: the total of every series per bucket, or one field.
  function drawSparkline(container, reply) {
    let xs;
    let ys;
    if (Array.isArray(reply.points)) {
      const field = container.dataset.sparklineField;
      xs = reply.points.map((p) => p.bucket_start_us / 1e6);
      ys = reply.points.map((p) => p[field]);
    } else {
      xs = reply.bucket_starts_us.map((us) => us / 1e6);
      ys = xs.map((_, i) => reply.series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
    }
    container.innerHTML = "";
    if (xs.length === 0) return;
    new uPlot({
      width: 140, height: 32,
      series: [{}, { stroke: "#2457c5", fill: "#2457c533", width: 1, points: { show: false } }],
      axes: [{ show: false }, { show: false }],
      legend: { show: false },
      cursor: { show: false },
      // A little room below zero keeps an idle (all-zero) line visible.
      scales: { x: { time: true }, y: { range: (u, min, max) => [-0.05 * Math.max(max, 1), Math.max(max, 1)] } },
    }, [xs, ys], container);
  }

  function lineChart(container, xs, series, label) {
    container.innerHTML = "";
    new uPlot({
      width: chartWidth(container),
      height: 300,
      series: [{}].concat(series.map((s, i) => ({ label: s.label, stroke: palette[i], width: 2, points: { show: xs.length < 60 }, scale: s.scale || "y" }))),
      axes: [{}, { label: label, scale: "y" }].concat(series.some((s) => s.scale === "y2") ? [{ side: 1, scale: "y2", label: series.find((s) => s.scale === "y2").label, grid: { show: false } }] : []),
      scales: { x: { time: true } },
    }, [xs].concat(series.map((s) => s.values)), container);
  }

  const drawers = {
    seriesUrl: drawActivity,
    sparklineUrl: drawSparkline,
    statementUrl: (container, reply) => {
      const xs = reply.points.map((p) => p.bucket_start_us / 1e6);
      lineChart(container, xs, [
        { label: "calls", values: reply.points.map((p) => p.calls) },
        { label: "mean time (ms)", values: reply.points.map((p) => p.mean_exec_time_ms), scale: "y2" },
      ], "calls");
    },
    growthUrl: (container, reply) => {
      const xs = reply.points.map((p) => p.collected_at_us / 1e6);
      const mb = (bytes) => bytes / 1048576;
      lineChart(container, xs, [
        { label: "total (MB)", values: reply.points.map((p) => mb(p.total_bytes)) },
        { label: "table (MB)", values: reply.points.map((p) => mb(p.table_bytes)) },
        { label: "indexes (MB)", values: reply.points.map((p) => mb(p.index_bytes)) },
      ], "MB");
    },
    lagUrl: (container, reply) => {
      const xs = reply.bucket_starts_us.map((us) => us / 1e6);
      const raw = reply.links.map((link) => ({ label: link.name + " replay lag", values: link.replay_lag_bytes }))
        .concat(reply.slots.map((slot) => ({ label: "slot " + slot.slot_name + " retained", values: slot.retained_bytes })));
      if (raw.length === 0) { showMessage(container, "empty", "No replication in this range."); return; }
      // The unit follows the largest value, so a few kilobytes of lag do not read as 0 MB.
      const largest = Math.max(0, ...raw.flatMap((s) => s.values.filter((v) => v !== null)));
      const [divisor, unit] = largest >= 1073741824 ? [1073741824, "GB"] : largest >= 1048576 ? [1048576, "MB"] : largest >= 1024 ? [1024, "kB"] : [1, "bytes"];
      const series = raw.map((s) => ({ label: s.label + " (" + unit + ")", values: s.values.map((v) => (v === null ? null : v / divisor)) }));
      lineChart(container, xs, series, unit);
    },
    walUrl: (container, reply) => {
      const xs = reply.points.map((p) => p.bucket_start_us / 1e6);
      const mb = (value) => (value === null ? null : value / 1048576);
      lineChart(container, xs, [
        { label: "WAL (MB/s)", values: reply.points.map((p) => mb(p.wal_bytes_per_second)) },
        { label: "checkpoints timed", values: reply.points.map((p) => p.checkpoints_timed), scale: "y2" },
        { label: "checkpoints requested", values: reply.points.map((p) => p.checkpoints_requested), scale: "y2" },
      ], "MB/s");
    },
    buffersUrl: (container, reply) => {
      const xs = reply.points.map((p) => p.bucket_start_us / 1e6);
      lineChart(container, xs, [
        { label: "by checkpoints", values: reply.points.map((p) => p.checkpoint_buffers_per_second) },
        { label: "by the background writer", values: reply.points.map((p) => p.bgwriter_buffers_per_second) },
        { label: "by backends (before PostgreSQL 17)", values: reply.points.map((p) => p.backend_buffers_per_second) },
      ], "buffers written per second");
    },
    locksUrl: (container, reply) => {
      const xs = reply.buckets.map((b) => b.bucket_start_us / 1e6);
      lineChart(container, xs, [{ label: "sessions waiting", values: reply.buckets.map((b) => b.max_waiting_sessions) }], "sessions waiting");
    },
  };

  async function refresh(container, key) {
    const url = container.dataset[key];
    try {
      drawers[key](container, await fetchJson(url));
    } catch (error) {
      showMessage(container, "error", "Cannot load the chart: " + error.message);
    }
  }

  function bindCharts(root) {
    for (const key of Object.keys(drawers)) {
      const attribute = "data-" + key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
      root.querySelectorAll("[" + attribute + "]").forEach((container) => {
        if (container.dataset.bound) return;
        container.dataset.bound = "1";
        refresh(container, key);
        const seconds = Number(container.dataset.refreshSeconds || 0);
        if (seconds > 0) {
          const timer = setInterval(() => {
            if (!document.body.contains(container)) { clearInterval(timer); return; }
            refresh(container, key);
          }, seconds * 1000);
        }
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => bindCharts(document));
  document.addEventListener("htmx:afterSwap", (event) => bindCharts(event.target));
})();
