/* HPC Resources page: cluster status (cached by the server), usage over time, predicted vs actual. */
"use strict";
(() => {
  const { h, clear, api, formatBytes, formatSeconds } = HPCAI;
  const $ = (id) => document.getElementById(id);

  function rows(tbody, items, cells, emptyText) {
    clear(tbody);
    if (!items.length) { tbody.append(h("tr", {}, h("td", { class: "muted", colspan: 6 }, emptyText))); return; }
    items.forEach((item) => tbody.append(h("tr", {}, cells(item).map((c) => h("td", {}, c ?? "—")))));
  }

  async function loadCluster() {
    const conn = $("conn").value.trim();
    try {
      const st = await api(`/api/cluster${conn ? `?conn_id=${encodeURIComponent(conn)}` : ""}`);
      $("cluster-status").textContent = "";
      $("updated").textContent = `updated ${new Date(st.fetched_at * 1000).toLocaleTimeString()} (${st.transport || "?"})` +
        (st.stale ? "; the cluster is slow to answer, showing the last answer" : "");
      rows($("partitions"), st.partitions || [], (p) => [p.name, p.state, p.nodes, p.total_cpus, p.max_time_seconds ? formatSeconds(p.max_time_seconds) : "unlimited", p.default ? "yes" : ""], "no partitions");
      rows($("nodes"), st.nodes || [], (n) => [n.name, n.partition, n.state, `${n.cpus_allocated} / ${n.cpus_total}`, `${n.free_memory_mb ?? "?"} / ${n.memory_mb ?? "?"}`], "no nodes");
      rows($("jobs"), st.jobs || [], (j) => [j.job_id, j.state, j.reason, j.tag], "no jobs of this provider in the queue");
      const hist = st.history || [];
      Charts.line($("chart-cpus"), [
        { name: "allocated", color: "#017cee", points: hist.map((p) => [p.time, p.cpus_allocated]) },
        { name: "total", color: "#9aa5b1", dashed: true, points: hist.map((p) => [p.time, p.cpus_total]) },
      ], { yLabel: "CPU cores", title: "CPU cores in use over time" });
      Charts.line($("chart-jobs"), [
        { name: "running", color: "#2e7d32", points: hist.map((p) => [p.time, p.jobs_running]) },
        { name: "pending", color: "#ef6c00", points: hist.map((p) => [p.time, p.jobs_pending]) },
      ], { yLabel: "jobs", title: "Provider jobs running and pending" });
    } catch (err) {
      $("cluster-status").textContent = `Cluster status unavailable: ${err.message}`;
      for (const id of ["chart-cpus", "chart-jobs"]) if (!$(id).firstChild) Charts.empty($(id), "cluster status unavailable");
    }
  }

  function shortDuration(v) {
    if (v < 60) return `${Number(v.toPrecision(2))} s`;
    if (v < 3600) return `${Number((v / 60).toPrecision(2))} min`;
    return `${Number((v / 3600).toPrecision(2))} h`;
  }

  async function loadUsage() {
    try {
      const data = await api("/api/usage?limit=300");
      const jobs = data.jobs || [];
      const label = (j) => `${j.job_id} ${j.dag_id || ""}.${j.task_id || ""} ${j.state}`;
      Charts.scatter($("chart-time"), jobs.map((j) => ({ x: j.requested_seconds, y: j.elapsed_seconds, label: `${label(j)}: asked ${formatSeconds(j.requested_seconds)}, used ${formatSeconds(j.elapsed_seconds)}`, bad: /TIMEOUT/.test(j.state || "") })),
        { xLabel: "time limit asked", yLabel: "time used", format: shortDuration, title: "wall time asked vs used" });
      Charts.scatter($("chart-mem"), jobs.map((j) => ({ x: j.requested_memory_bytes, y: j.max_rss_bytes, label: `${label(j)}: asked ${formatBytes(j.requested_memory_bytes)}, peak ${formatBytes(j.max_rss_bytes)}`, bad: /OUT_OF_MEMORY|OOM/.test(j.state || "") })),
        { xLabel: "memory asked", yLabel: "peak memory used", format: formatBytes, title: "memory asked vs used" });
      $("usage-status").textContent = `${jobs.length} finished job${jobs.length === 1 ? "" : "s"} in the advisor's history (red: killed at the limit).`;
    } catch (err) {
      $("usage-status").textContent = `Predicted vs actual usage unavailable: ${err.message}`;
      Charts.empty($("chart-time"), "no job history available");
      Charts.empty($("chart-mem"), "no job history available");
    }
  }

  $("conn").addEventListener("change", loadCluster);
  loadCluster(); loadUsage();
  setInterval(loadCluster, 15000);
  setInterval(loadUsage, 60000);
})();
