/* Small SVG charts (no external library): a time line chart and a predicted-vs-actual scatter. */
"use strict";
const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 480, H = 240, M = { l: 56, r: 12, t: 10, b: 36 };

  function s(tag, attrs, text) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = String(text);
    return el;
  }

  function niceTicks(lo, hi, count = 5) {
    if (!(hi > lo)) hi = lo + 1;
    const step0 = (hi - lo) / count; const mag = 10 ** Math.floor(Math.log10(step0));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((x) => x >= step0) || step0;
    const ticks = []; for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
    return ticks;
  }

  function frame(el, title) {
    while (el.firstChild) el.removeChild(el.firstChild);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
    el.append(svg);
    return svg;
  }

  function axes(svg, x, y, xt, yt, fx, fy, xLabel, yLabel) {
    const g = s("g", {});
    for (const v of yt) {
      g.append(s("line", { x1: M.l, x2: W - M.r, y1: y(v), y2: y(v), stroke: "#eef2f6" }));
      g.append(s("text", { x: M.l - 6, y: y(v) + 4, "text-anchor": "end" }, fy(v)));
    }
    for (const v of xt) g.append(s("text", { x: x(v), y: H - M.b + 14, "text-anchor": "middle" }, fx(v)));
    g.append(s("line", { x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b, stroke: "#9aa5b1" }));
    g.append(s("line", { x1: M.l, x2: M.l, y1: M.t, y2: H - M.b, stroke: "#9aa5b1" }));
    g.append(s("text", { x: (M.l + W - M.r) / 2, y: H - 4, "text-anchor": "middle" }, xLabel));
    g.append(s("text", { x: 12, y: (M.t + H - M.b) / 2, "text-anchor": "middle", transform: `rotate(-90 12 ${(M.t + H - M.b) / 2})` }, yLabel));
    svg.append(g);
  }

  function empty(el, message) {
    const svg = frame(el, message);
    svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, message));
  }

  /* series: [{name, color, points: [[t_seconds, value], ...]}] */
  function line(el, series, { yLabel = "", title = "" } = {}) {
    const pts = series.flatMap((sr) => sr.points);
    if (!pts.length) return empty(el, "no samples yet");
    let x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
    if (x1 === x0) { x0 -= 30; x1 += 30; }
    const y1 = Math.max(1, ...pts.map((p) => p[1])) * 1.1;
    const x = (v) => M.l + ((v - x0) / (x1 - x0)) * (W - M.l - M.r);
    const y = (v) => H - M.b - (v / y1) * (H - M.t - M.b);
    const svg = frame(el, title);
    const fmt = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    axes(svg, x, y, niceTicks(x0, x1, 4), niceTicks(0, y1, 4), fmt, (v) => String(v), "time", yLabel);
    series.forEach((sr, i) => {
      if (!sr.points.length) return;
      const d = sr.points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
      svg.append(s("path", { d, fill: "none", stroke: sr.color, "stroke-width": 2, "stroke-dasharray": sr.dashed ? "5 4" : "none" }));
      sr.points.forEach((p) => svg.append(s("circle", { cx: x(p[0]), cy: y(p[1]), r: 2.5, fill: sr.color })));
      svg.append(s("text", { x: M.l + 8 + i * 130, y: M.t + 12, fill: sr.color }, `■ ${sr.name}`));
    });
  }

  /* points: [{x: predicted, y: actual, label, bad}] on log axes, with the y = x line. */
  function scatter(el, points, { xLabel = "", yLabel = "", format = String, title = "" } = {}) {
    const pts = points.filter((p) => p.x > 0 && p.y > 0);
    if (!pts.length) return empty(el, "no finished jobs with both values yet");
    const lo = Math.log10(Math.min(...pts.map((p) => Math.min(p.x, p.y)))) - 0.1;
    const hi = Math.log10(Math.max(...pts.map((p) => Math.max(p.x, p.y)))) + 0.1;
    const x = (v) => M.l + ((Math.log10(v) - lo) / (hi - lo)) * (W - M.l - M.r);
    const y = (v) => H - M.b - ((Math.log10(v) - lo) / (hi - lo)) * (H - M.t - M.b);
    const ticks = []; for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) ticks.push(10 ** e);
    if (ticks.length < 2) ticks.splice(0, ticks.length, 10 ** lo, 10 ** hi);
    const svg = frame(el, title);
    axes(svg, x, y, ticks, ticks, format, format, xLabel, yLabel);
    svg.append(s("line", { x1: x(10 ** lo), y1: y(10 ** lo), x2: x(10 ** hi), y2: y(10 ** hi), stroke: "#9aa5b1", "stroke-dasharray": "4 4" }));
    svg.append(s("text", { x: x(10 ** hi) - 4, y: y(10 ** hi) + 14, "text-anchor": "end" }, "used = asked"));
    for (const p of pts) {
      const dot = s("circle", { cx: x(p.x), cy: y(p.y), r: 3.5, fill: p.bad ? "#c62828" : "#017cee", "fill-opacity": 0.75 });
      dot.append(s("title", {}, p.label));
      svg.append(dot);
    }
  }

  return { line, scatter, empty };
})();
