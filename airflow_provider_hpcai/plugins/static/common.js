/* Shared helpers for the HPC-AI plugin pages. Data is always inserted as text, never as HTML. */
"use strict";
const HPCAI = (() => {
  const body = document.body;
  const base = body.dataset.base || "";
  const airflowBase = body.dataset.airflowBase || "";

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(el.dataset, value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }

  class ApiError extends Error {
    constructor(status, detail, errors) {
      super(typeof detail === "string" ? detail : JSON.stringify(detail));
      this.status = status; this.errors = errors || [];
    }
  }

  async function api(path, options = {}) {
    const init = { credentials: "same-origin", method: options.method || "GET", headers: { "Accept": "application/json", "X-Requested-With": "hpcai" } };
    if (options.body !== undefined) { init.body = JSON.stringify(options.body); init.headers["Content-Type"] = "application/json"; }
    const response = await fetch(base + path, init);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const detail = data && data.detail !== undefined ? data.detail : response.statusText;
      const prefix = response.status === 401 ? "Not logged in to Airflow: " : response.status === 403 ? "Not allowed: " : "";
      throw new ApiError(response.status, prefix + (typeof detail === "string" ? detail : JSON.stringify(detail)), data && data.errors);
    }
    return data;
  }

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
  }

  function formatBytes(n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0; let v = Number(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(v >= 10 || i === 0 ? 0 : 1)} ${units[i]}`;
  }

  function formatSeconds(s) {
    if (s === null || s === undefined) return "—";
    s = Math.round(Number(s));
    const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
    const hms = [hh, mm, ss].map((x) => String(x).padStart(2, "0")).join(":");
    return d ? `${d}-${hms}` : hms;
  }

  function dagUrl(dagId) { return `${airflowBase}/dags/${encodeURIComponent(dagId)}`; }

  /* Airflow shows plugin pages in a sandboxed iframe that may not navigate the top window.
     When the page sits inside Airflow's UI (same origin), ask the UI's router to show the
     Airflow page instead: push the URL on its history and tell it with a popstate event. */
  function openInAirflow(event) {
    const url = event.currentTarget.getAttribute("href");
    if (window.top === window) return; // opened on its own: an ordinary link
    try {
      const top = window.top;
      if (top.location.origin !== window.location.origin) return;
      event.preventDefault();
      const state = top.history.state || {};
      const idx = typeof state.idx === "number" ? state.idx + 1 : 0;
      top.history.pushState({ usr: null, key: Math.random().toString(36).slice(2, 10), idx }, "", url);
      top.dispatchEvent(new top.PopStateEvent("popstate", { state: top.history.state }));
    } catch (err) { /* a different origin: leave it to the browser */ }
  }

  function airflowLink(href, text, attrs = {}) {
    return h("a", { href, target: "_top", onclick: openInAirflow, ...attrs }, text);
  }

  return { base, airflowBase, h, clear, api, ApiError, debounce, formatBytes, formatSeconds, dagUrl, airflowLink };
})();
