// Talking to the plugin's API: same origin, Airflow's cookie, and a header a cross-site form cannot send.
export const base = document.body.dataset.base || "";
export const airflowBase = document.body.dataset.airflowBase || "";

export class ApiError extends Error {
  constructor(status, detail, data) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.data = data || {};
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const init = {
    credentials: "same-origin",
    method,
    headers: { Accept: "application/json", "X-Requested-With": "hpcai" },
  };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(base + path, init);
  let data = null;
  try {
    data = await response.json();
  } catch (e) {
    data = null;
  }
  if (!response.ok) {
    const detail = data && data.detail !== undefined ? data.detail : response.statusText;
    const prefix = response.status === 401 ? "Not logged in to Airflow: " : response.status === 403 ? "Not allowed: " : "";
    throw new ApiError(response.status, prefix + (typeof detail === "string" ? detail : JSON.stringify(detail)), data);
  }
  return data;
}

export function formatBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v >= 10 || i === 0 ? 0 : 1)} ${units[i]}`;
}

export function formatSeconds(s) {
  if (s === null || s === undefined) return "—";
  const v = Number(s);
  if (v < 60) return `${v.toFixed(v < 10 ? 1 : 0)} s`;
  if (v < 3600) return `${Math.floor(v / 60)} min ${Math.round(v % 60)} s`;
  return `${Math.floor(v / 3600)} h ${Math.round((v % 3600) / 60)} min`;
}

export function percent(x) {
  return x === null || x === undefined ? "—" : `${Math.round(Number(x) * 100)} %`;
}
