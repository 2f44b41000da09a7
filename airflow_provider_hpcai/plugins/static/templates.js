/* Workflow Templates page: gallery, detail with generated form, instantiate, instances. */
"use strict";
(() => {
  const { h, clear, api, debounce, formatBytes, formatSeconds, dagUrl, airflowLink } = HPCAI;
  const $ = (id) => document.getElementById(id);
  let current = null; // the template shown in the detail view
  let allTemplates = [];

  function show(view) {
    for (const id of ["gallery-view", "detail-view", "instances-view"]) $(id).hidden = id !== view;
  }

  // ------------------------------------------------------------------ gallery
  function card(t) {
    return h("article", { class: "card", tabindex: "0", role: "link", dataset: { template: t.name },
      onclick: () => { location.hash = `#/t/${encodeURIComponent(t.name)}`; },
      onkeydown: (e) => { if (e.key === "Enter") location.hash = `#/t/${encodeURIComponent(t.name)}`; } },
      h("h3", {}, t.title),
      h("p", { class: "muted" }, `${t.name} ${t.version} · ${t.domain}`),
      h("p", {}, t.description.length > 180 ? `${t.description.slice(0, 177)}…` : t.description),
      h("div", { class: "tags" }, t.tags.map((tag) => h("span", { class: "tag" }, tag)),
        t.deprecated ? h("span", { class: "tag deprecated" }, "deprecated") : null,
        t.origin === "built-in" ? h("span", { class: "tag builtin", title: "shipped with the provider (read-only)" }, "built-in") : null),
      h("p", { class: "muted" }, `runs on: ${t.backends.join(", ")}`));
  }

  function fillFilters(items) {
    const domains = [...new Set(items.map((t) => t.domain))].sort();
    const tags = [...new Set(items.flatMap((t) => t.tags))].sort();
    for (const [id, values] of [["domain", domains], ["tag", tags]]) {
      const select = $(id); const keep = select.value;
      while (select.options.length > 1) select.remove(1);
      values.forEach((v) => select.append(h("option", { value: v, selected: v === keep }, v)));
    }
  }

  async function loadGallery() {
    const params = new URLSearchParams();
    if ($("search").value.trim()) params.set("q", $("search").value.trim());
    if ($("domain").value) params.set("domain", $("domain").value);
    if ($("tag").value) params.set("tag", $("tag").value);
    $("gallery-status").textContent = "Loading…";
    try {
      const data = await api(`/api/templates${params.toString() ? `?${params}` : ""}`);
      if (!params.toString()) { allTemplates = data.templates; fillFilters(allTemplates); }
      clear($("cards")).append(...data.templates.map(card));
      $("gallery-status").textContent = data.total ? `${data.total} template${data.total === 1 ? "" : "s"}` : "No template matches.";
    } catch (err) { $("gallery-status").textContent = err.message; }
  }
  const reloadGallery = debounce(loadGallery, 250);
  $("search").addEventListener("input", reloadGallery);
  $("domain").addEventListener("change", loadGallery);
  $("tag").addEventListener("change", loadGallery);

  // ------------------------------------------------------------------ detail
  function resourceRows(res) {
    const rows = [];
    const label = { nodes: "Nodes", ntasks: "Tasks", cpus_per_task: "CPUs per task", memory: "Memory", gpus: "GPUs", time_limit: "Time limit", time_min: "Time min", partition: "Partition", account: "Account", qos: "QOS", constraint: "Constraint", ntasks_per_node: "Tasks per node", exclusive: "Whole nodes", reservation: "Reservation" };
    for (const [key, value] of Object.entries(res || {})) {
      if (value === null || value === undefined) continue;
      let text = value;
      if (key === "memory" && typeof value === "number") text = formatBytes(value);
      if ((key === "time_limit" || key === "time_min") && typeof value === "number") text = formatSeconds(value);
      rows.push(h("tr", {}, h("td", {}, label[key] || key), h("td", {}, String(text))));
    }
    return rows.length ? rows : [h("tr", {}, h("td", { class: "muted" }, "scheduler defaults"))];
  }

  async function loadDetail(name, version) {
    show("detail-view");
    clear($("result")); $("form-errors").textContent = "";
    $("detail-title").textContent = "Loading…";
    try {
      current = await api(`/api/templates/${encodeURIComponent(name)}${version ? `?version=${encodeURIComponent(version)}` : ""}`);
    } catch (err) { $("detail-title").textContent = err.message; return; }
    const t = current;
    $("detail-title").textContent = t.title;
    const versionSelect = h("select", { id: "version", "aria-label": "Version", onchange: (e) => { location.hash = `#/t/${encodeURIComponent(t.name)}@${encodeURIComponent(e.target.value)}`; } },
      t.versions.map((v) => h("option", { value: v.version, selected: v.version === t.version }, `${v.version}${v.deprecated ? " (deprecated)" : ""}`)));
    clear($("detail-meta")).append(`${t.name} · version `, versionSelect, ` · ${t.domain} · maintained by ${t.maintainer || "—"} · sha256 ${t.checksum.slice(0, 12)}…`,
      t.deprecated ? h("span", { class: "tag deprecated" }, ` deprecated: ${(t.deprecation && t.deprecation.reason) || ""}`) : "",
      t.origin === "built-in" ? h("span", { class: "tag builtin" }, "built-in") : "",
      " · ", h("a", { id: "open-in-composer", href: `${document.body.dataset.base || ""}/compose?open=${encodeURIComponent(t.name)}&version=${encodeURIComponent(t.version)}` }, "Open in Compose"));
    $("detail-description").textContent = t.description;
    SchemaForm.build($("fields"), t.parameters);
    clear($("resources-table")).append(...resourceRows(t.resources));
    clear($("stages")).append(...(t.stages.length ? t.stages.map((s) => h("li", {}, `${s.id} (${s.kind})${s.depends_on.length ? ` after ${s.depends_on.join(", ")}` : ""}`))
      : [h("li", { class: "muted" }, `built by ${t.entrypoint}`)]));
    $("advice").textContent = "Fill in the form to get a prediction.";
    $("instantiate").disabled = false;
    revalidate();
  }

  function formValues() {
    const { values, errors } = SchemaForm.read($("fields"), current.parameters);
    return { values, errors: errors.concat(SchemaForm.check(current.parameters, values)) };
  }

  async function revalidateNow() {
    if (!current) return;
    const { values, errors } = formValues();
    if (errors.length) { $("form-errors").textContent = SchemaForm.showErrors($("fields"), errors).join("\n"); return; }
    try {
      await api("/api/validate", { method: "POST", body: { template: current.name, version: current.version, params: values } });
      SchemaForm.showErrors($("fields"), []); $("form-errors").textContent = "";
      advise(values);
    } catch (err) {
      $("form-errors").textContent = SchemaForm.showErrors($("fields"), err.errors.length ? err.errors : [{ message: err.message }]).join("\n");
    }
  }
  const revalidate = debounce(revalidateNow, 300);
  $("fields").addEventListener("input", revalidate);
  $("fields").addEventListener("change", revalidate);

  async function advise(values) {
    const box = $("advice");
    try {
      const data = await api("/api/advice", { method: "POST", body: { template: current.name, version: current.version, params: values } });
      const predicted = (data.advice && data.advice.resources) || {};
      clear(box).className = "";
      box.append(h("table", { class: "kv", id: "advice-table" }, ...resourceRows(predicted)));
      if (data.advice.explanation) box.append(h("p", { class: "muted" }, String(data.advice.explanation)));
    } catch (err) {
      clear(box).className = "muted";
      box.textContent = err.status === 503 ? `No prediction: ${err.message}` : err.message;
    }
  }

  $("param-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const { values, errors } = formValues();
    const rest = SchemaForm.showErrors($("fields"), errors);
    $("form-errors").textContent = rest.join("\n");
    if (errors.length) return;
    $("instantiate").disabled = true;
    clear($("result")).append(h("p", { class: "muted" }, "Creating…"));
    try {
      const record = await api(`/api/templates/${encodeURIComponent(current.name)}/instantiate`, { method: "POST", body: { version: current.version, params: values } });
      clear($("result")).append(h("p", { class: "ok", id: "created" }, "Created instance ", h("code", {}, record.id), ". Its DAG ",
        airflowLink(dagUrl(record.dag_id), record.dag_id, { id: "dag-link" }),
        " appears in Airflow after the dag processor's next parse of the loader file."));
    } catch (err) {
      clear($("result"));
      $("form-errors").textContent = SchemaForm.showErrors($("fields"), err.errors.length ? err.errors : [{ message: err.message }]).join("\n");
    } finally { $("instantiate").disabled = false; }
  });

  // ------------------------------------------------------------------ instances
  async function loadInstances() {
    show("instances-view");
    const tbody = clear($("instances"));
    $("instances-status").textContent = "Loading…";
    try {
      const data = await api("/api/instances");
      data.instances.slice().reverse().forEach((r) => tbody.append(h("tr", {},
        h("td", {}, h("code", {}, r.id)),
        h("td", {}, airflowLink(dagUrl(r.dag_id), r.dag_id)),
        h("td", {}, `${r.template} ${r.version}`), h("td", {}, r.owner), h("td", {}, r.created),
        h("td", {}, h("button", { class: "small", type: "button", onclick: async () => {
          if (!confirm(`Delete instance ${r.id}? Its DAG disappears at the next parse.`)) return;
          try { await api(`/api/instances/${encodeURIComponent(r.id)}`, { method: "DELETE" }); loadInstances(); }
          catch (err) { $("instances-status").textContent = err.message; }
        } }, "Delete")))));
      $("instances-status").textContent = data.total ? "" : "No instances yet: create one from the gallery.";
    } catch (err) { $("instances-status").textContent = err.message; }
  }

  // ------------------------------------------------------------------ routing
  function route() {
    const hash = location.hash || "#/";
    const detail = /^#\/t\/([^@]+)(?:@(.+))?$/.exec(hash);
    if (detail) loadDetail(decodeURIComponent(detail[1]), detail[2] ? decodeURIComponent(detail[2]) : null);
    else if (hash === "#/instances") loadInstances();
    else { show("gallery-view"); loadGallery(); }
  }
  window.addEventListener("hashchange", route);
  route();
})();
