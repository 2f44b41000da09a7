// The HPC Jobs view of one DAG run: each task's job, requested against used, efficiency, the
// advisor's decision and the stage's declared outputs. Polls while the run is live; the server
// answers live Slurm states from its cached, single-flight cluster monitor.
import React, { useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { api, base, formatBytes, formatSeconds, percent } from "./api.js";

const params = new URLSearchParams(window.location.search);
const dagId = params.get("dag_id") || "";
const runId = params.get("run_id") || "";
const INTERVAL_MS = 5000;

function Advisor({ decision }) {
  if (!decision) return <span className="muted">—</span>;
  if (typeof decision === "string") return <span>{decision}</span>;
  const text = decision.summary || decision.reason || decision.source || JSON.stringify(decision);
  return <span title={JSON.stringify(decision)}>{String(text).slice(0, 160)}</span>;
}

function Output({ task, output }) {
  const url = `${base}/api/runs/${encodeURIComponent(dagId)}/${encodeURIComponent(runId)}/outputs/${encodeURIComponent(task.task_id)}/${output.index}?map_index=${task.map_index}`;
  if (output.kind === "png" || output.kind === "svg" || output.kind === "image") {
    return (
      <figure className="output">
        <img src={url} alt={output.title} loading="lazy" />
        <figcaption>{output.title}</figcaption>
      </figure>
    );
  }
  return <CsvOutput url={url} title={output.title} />;
}

function CsvOutput({ url, title }) {
  const [rows, setRows] = useState(null);
  useEffect(() => {
    fetch(url, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.text() : Promise.reject(new Error(r.statusText))))
      .then((text) => setRows(text.trim().split("\n").slice(0, 51).map((line) => line.split(","))))
      .catch(() => setRows([]));
  }, [url]);
  return (
    <figure className="output csv">
      <figcaption>
        {title} <a href={url}>download</a>
      </figcaption>
      {rows && rows.length ? (
        <table className="grid">
          <thead>
            <tr>{rows[0].map((c, i) => <th key={i}>{c}</th>)}</tr>
          </thead>
          <tbody>
            {rows.slice(1).map((r, i) => (
              <tr key={i}>{r.map((c, j) => <td key={j}>{c}</td>)}</tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </figure>
  );
}

function Monitor() {
  const [run, setRun] = useState(null);
  const [error, setError] = useState("");
  const [updated, setUpdated] = useState(null);
  useEffect(() => {
    let timer = null;
    let stopped = false;
    async function load() {
      try {
        const d = await api(`/api/runs/${encodeURIComponent(dagId)}/${encodeURIComponent(runId)}`);
        if (stopped) return;
        setRun(d);
        setError("");
        setUpdated(new Date());
        if (d.live || d.tasks.some((t) => !["success", "failed", "skipped", "upstream_failed", "removed"].includes(t.state))) {
          timer = setTimeout(load, INTERVAL_MS);
        }
      } catch (e) {
        if (stopped) return;
        setError(e.message);
        timer = setTimeout(load, INTERVAL_MS * 2);
      }
    }
    if (dagId && runId) load();
    else setError("Open this page from a DAG run (its HPC Jobs tab).");
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, []);
  return (
    <div>
      <header className="bar">
        <h1>HPC jobs of {dagId} / {runId}</h1>
        <span id="run-state" className={`state state-${run ? run.state : "unknown"}`} role="status">
          {run ? run.state : "loading…"}
        </span>
      </header>
      <main>
        {error ? <p className="error" role="alert">{error}</p> : null}
        {updated ? <p className="muted">Updated {updated.toLocaleTimeString()}{run && run.live ? `; refreshed every ${INTERVAL_MS / 1000} s while the run is live` : ""}</p> : null}
        {run ? (
          <table className="grid jobs" id="jobs">
            <thead>
              <tr>
                <th>Task</th><th>State</th><th>Backend</th><th>Job</th><th>Nodes</th><th>Queue</th><th>Run</th>
                <th>CPUs asked / used</th><th>Memory asked / peak</th><th>GPUs</th><th>Efficiency CPU / mem</th><th>Advisor</th>
              </tr>
            </thead>
            <tbody>
              {run.tasks.map((t) => {
                const j = t.job;
                return (
                  <tr key={`${t.task_id}:${t.map_index}`} data-task={t.task_id} className={`state-${t.state}`}>
                    <td>{t.task_id}{t.map_index >= 0 ? `[${t.map_index}]` : ""}</td>
                    <td className="task-state">{t.state || "none"}</td>
                    <td>{j ? j.backend : "—"}</td>
                    <td>{j ? `${j.job_id} (${j.state}${j.live ? ", live" : ""})` : "—"}</td>
                    <td>{j ? j.node_list || "—" : "—"}</td>
                    <td>{j ? formatSeconds(j.queue_seconds) : "—"}</td>
                    <td>{j ? formatSeconds(j.run_seconds) : t.duration ? formatSeconds(t.duration) : "—"}</td>
                    <td>{j ? `${j.requested.cpus} / ${j.used.cpu_seconds !== null && j.run_seconds ? (j.used.cpu_seconds / j.run_seconds).toFixed(2) : "—"}` : "—"}</td>
                    <td>{j ? `${formatBytes(j.requested.memory_bytes)} / ${formatBytes(j.used.max_rss_bytes)}` : "—"}</td>
                    <td>{j && j.requested.gpus ? j.requested.gpus : "—"}</td>
                    <td>{j ? `${percent(j.efficiency.cpu)} / ${percent(j.efficiency.memory)}` : "—"}</td>
                    <td>{j ? <Advisor decision={j.advisor} /> : "—"}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        ) : null}
        {run
          ? run.tasks
              .filter((t) => t.outputs.length)
              .map((t) => (
                <section key={`${t.task_id}:${t.map_index}`} className="outputs" data-outputs={t.task_id}>
                  <h2>Outputs of {t.task_id}</h2>
                  <div className="output-grid">
                    {t.outputs.map((o) => <Output key={o.index} task={t} output={o} />)}
                  </div>
                </section>
              ))
          : null}
      </main>
    </div>
  );
}

createRoot(document.getElementById("root")).render(<Monitor />);
