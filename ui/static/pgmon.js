// pgmon's page behaviour: draws the stacked average-active-sessions chart with uPlot and
// refreshes it; htmx swaps panels, this script (re)binds charts after each swap.
(function () {
  "use strict";

  const palette = ["#2457c5", "#e07b00", "#2a9d4b", "#c23b3b", "#7b4bc2", "#0f8c8c", "#b5a000", "#8c5a2b", "#d14fa3", "#5b6475"];
  // Wait event types get stable colours, as in Performance Insights.
  const fixedColours = { CPU: "#2a9d4b", Lock: "#c23b3b", LWLock: "#e07b00", IO: "#2457c5", IPC: "#7b4bc2", Timeout: "#b5a000", Client: "#0f8c8c", Activity: "#8c5a2b", BufferPin: "#d14fa3", Extension: "#5b6475" };

  function colourFor(name, index) {
    return fixedColours[name] || palette[index % palette.length];
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

  function draw(container, reply) {
    const width = Math.max(container.clientWidth - 16, 300);
    container.innerHTML = "";
    if (reply.series.length === 0) {
      const hasSamples = reply.samples.some((n) => n > 0);
      container.innerHTML = hasSamples
        ? '<p class="empty">No active sessions in this range.</p>'
        : '<p class="empty">No samples in this range: is the collector running for this target?</p>';
      return;
    }
    const xs = reply.bucket_starts_us.map((us) => us / 1e6);
    const stacked = stack(reply.series);
    // Draw the top band first so lower bands paint over it.
    const order = reply.series.map((_, i) => i).reverse();
    const data = [xs].concat(order.map((i) => stacked[i]));
    const uSeries = [{}].concat(order.map((i) => ({
      label: reply.series[i].name,
      stroke: colourFor(reply.series[i].name, i),
      fill: colourFor(reply.series[i].name, i) + "cc",
      width: 1,
      points: { show: false },
      value: (u, v, si, idx) => {
        const raw = reply.series[order[si - 1]].values[idx];
        return raw === null || raw === undefined ? "–" : raw.toFixed(2);
      },
    })));
    new uPlot({
      width: width,
      height: 360,
      series: uSeries,
      scales: { y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [{}, { label: "average active sessions" }],
      legend: { live: true },
    }, data, container);
  }

  async function refresh(container) {
    const url = container.dataset.seriesUrl;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      const body = await response.json();
      if (!response.ok) {
        container.innerHTML = '<p class="error"></p>';
        container.firstChild.textContent = body.error || response.statusText;
        return;
      }
      draw(container, body);
    } catch (error) {
      container.innerHTML = '<p class="error"></p>';
      container.firstChild.textContent = "Cannot load the series: " + error;
    }
  }

  function bindCharts(root) {
    root.querySelectorAll("[data-series-url]").forEach((container) => {
      if (container.dataset.bound) return;
      container.dataset.bound = "1";
      refresh(container);
      const seconds = Number(container.dataset.refreshSeconds || 0);
      if (seconds > 0) {
        const timer = setInterval(() => {
          if (!document.body.contains(container)) { clearInterval(timer); return; }
          refresh(container);
        }, seconds * 1000);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => bindCharts(document));
  document.addEventListener("htmx:afterSwap", (event) => bindCharts(event.target));
})();
