// The Compose page: a palette of stage kinds, a React Flow canvas, a form per node generated from
// its JSON Schema, live validation by the server, and saving as a new template version.
import React, { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { createRoot } from "react-dom/client";
import {
  Background,
  Controls,
  Handle,
  Position,
  ReactFlow,
  ReactFlowProvider,
  addEdge,
  applyEdgeChanges,
  applyNodeChanges,
  useReactFlow,
} from "@xyflow/react";
import { airflowBase, api, base } from "./api.js";
import { JsonField, SchemaField } from "./SchemaForm.jsx";

const NEW_TEMPLATE = {
  name: "my-workflow",
  version: "1.0.0",
  title: "My workflow",
  description: "",
  parameters: { type: "object", additionalProperties: false, properties: {} },
  backends: ["local"],
};

function StageNode({ id, data, selected }) {
  const problems = data.problems || [];
  const errors = problems.filter((p) => p.severity !== "warning");
  return (
    <div
      className={`stage-node${errors.length ? " stage-invalid" : ""}${selected ? " stage-selected" : ""}`}
      data-testid={`node-${id}`}
      data-invalid={errors.length ? "true" : "false"}
    >
      <Handle type="target" position={Position.Left} aria-label={`input of ${id}`} />
      <div className="stage-kind">{data.label}</div>
      <div className="stage-id">{id}</div>
      {data.map_over ? <div className="stage-map">mapped over {data.map_over}</div> : null}
      {errors.length ? (
        <ul className="stage-problems" role="alert">
          {errors.slice(0, 3).map((p, i) => (
            <li key={i}>{p.field ? `${p.field}: ` : ""}{p.message}</li>
          ))}
        </ul>
      ) : null}
      <Handle type="source" position={Position.Right} aria-label={`output of ${id}`} />
    </div>
  );
}

function FactoryNode({ data }) {
  return (
    <div className="stage-node factory-node" data-testid="node-factory">
      <div className="stage-kind">Python factory</div>
      <div className="stage-id">{data.entrypoint}</div>
      <div className="stage-map">its stages are built in code; parameters and metadata can change</div>
    </div>
  );
}

const nodeTypes = { stage: StageNode, factory: FactoryNode };

function uniqueId(stem, taken) {
  const clean = (stem || "stage").replace(/[^A-Za-z0-9_]/g, "_").replace(/^[^A-Za-z]+/, "") || "stage";
  let i = 1;
  while (taken.has(`${clean}_${i}`)) i++;
  return `${clean}_${i}`;
}

function stripEmpty(value) {
  return value === undefined ? {} : value;
}

function toDocument(template, nodes, edges, baseRef) {
  return {
    template,
    nodes: nodes
      .filter((n) => n.type === "stage")
      .map((n) => {
        const out = { id: n.id, kind: n.data.kind, args: stripEmpty(n.data.args), position: { x: Math.round(n.position.x), y: Math.round(n.position.y) } };
        if (n.data.map_over) out.map_over = n.data.map_over;
        return out;
      }),
    edges: edges.map((e) => ({ source: e.source, target: e.target })),
    base: baseRef,
  };
}

function labelFor(kind, args, palette) {
  const entry = palette.find((p) => p.kind === kind && Object.entries(p.preset || {}).every(([k, v]) => k === "version" || k === "backend" || k === "script" || k === "image" || k === "cmds" || k === "argv" || k === "analysis" || args[k] === v));
  return entry ? entry.label : kind;
}

function Composer() {
  const flow = useReactFlow();
  const wrapper = useRef(null);
  const [palette, setPalette] = useState([]);
  const [templates, setTemplates] = useState([]);
  const [template, setTemplate] = useState(NEW_TEMPLATE);
  const [baseRef, setBaseRef] = useState(null);
  const [nextVersion, setNextVersion] = useState(null);
  const [nodes, setNodes] = useState([]);
  const [edges, setEdges] = useState([]);
  const [selected, setSelected] = useState(null);
  const [problems, setProblems] = useState([]);
  const [checking, setChecking] = useState(false);
  const [status, setStatus] = useState("");
  const [saved, setSaved] = useState(null);
  const [created, setCreated] = useState(null);
  const [openName, setOpenName] = useState("");
  const [connectFrom, setConnectFrom] = useState("");
  const [factory, setFactory] = useState(null);

  useEffect(() => {
    api("/api/compose/palette").then((d) => setPalette(d.palette)).catch((e) => setStatus(e.message));
    api("/api/templates").then((d) => setTemplates(d.templates)).catch(() => {});
  }, []);
  // "Open in Compose" from the gallery: /compose?open=NAME&version=VERSION
  useEffect(() => {
    const query = new URLSearchParams(window.location.search);
    if (palette.length && query.get("open")) {
      setOpenName(query.get("open"));
      openTemplate(query.get("open"), query.get("version"));
      window.history.replaceState(null, "", window.location.pathname);
    }
  }, [palette.length]);

  const document_ = useMemo(() => {
    const t = factory ? { ...template, entrypoint: factory } : template;
    return toDocument(t, nodes, edges, baseRef);
  }, [template, nodes, edges, baseRef, factory]);
  const docKey = JSON.stringify({ ...document_, nodes: document_.nodes.map(({ position, ...rest }) => rest) });

  // Live validation on the server, a moment after the last change.
  useEffect(() => {
    let cancelled = false;
    setChecking(true);
    const timer = setTimeout(() => {
      api("/api/compose/validate", { method: "POST", body: { document: JSON.parse(docKey) } })
        .then((d) => {
          if (!cancelled) setProblems(d.problems || []);
        })
        .catch((e) => {
          if (!cancelled) setProblems([{ node: null, field: null, message: e.message, severity: "error" }]);
        })
        .finally(() => {
          if (!cancelled) setChecking(false);
        });
    }, 350);
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
  }, [docKey]);

  const byNode = useMemo(() => {
    const out = {};
    for (const p of problems) if (p.node) (out[p.node] = out[p.node] || []).push(p);
    return out;
  }, [problems]);
  const shownNodes = useMemo(
    () => nodes.map((n) => (n.type === "stage" ? { ...n, data: { ...n.data, problems: byNode[n.id] || [] } } : n)),
    [nodes, byNode],
  );
  const templateProblems = problems.filter((p) => !p.node);

  const onNodesChange = useCallback((changes) => setNodes((ns) => applyNodeChanges(changes, ns)), []);
  const onEdgesChange = useCallback((changes) => setEdges((es) => applyEdgeChanges(changes, es)), []);
  const connect = useCallback((source, target) => {
    if (!source || !target) return;
    setEdges((es) => (es.some((e) => e.source === source && e.target === target) ? es : addEdge({ id: `${source}->${target}`, source, target }, es)));
  }, []);
  const onConnect = useCallback((c) => connect(c.source, c.target), [connect]);
  const onSelectionChange = useCallback(({ nodes: sel }) => {
    if (sel.length === 1) setSelected(sel[0].id);
  }, []);

  const addNode = useCallback(
    (entry, position) => {
      const taken = new Set(nodes.map((n) => n.id));
      const stem = entry.kind === "simulation" ? entry.preset.kernel : entry.kind === "template" ? entry.preset.name : entry.kind;
      const id = uniqueId(stem, taken);
      const pos = position || { x: 60 + 260 * (nodes.length % 4), y: 60 + 150 * Math.floor(nodes.length / 4) };
      const node = { id, type: "stage", position: pos, data: { kind: entry.kind, label: entry.label, args: { ...entry.preset }, map_over: null } };
      setNodes((ns) => [...ns.map((n) => ({ ...n, selected: false })), { ...node, selected: true }]);
      setSelected(id);
      setSaved(null);
      return id;
    },
    [nodes],
  );

  const onDragOver = useCallback((event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
  }, []);
  const onDrop = useCallback(
    (event) => {
      event.preventDefault();
      const entryId = event.dataTransfer.getData("application/x-hpcai-stage");
      const entry = palette.find((p) => p.id === entryId);
      if (!entry || entry.disabled) return;
      addNode(entry, flow.screenToFlowPosition({ x: event.clientX, y: event.clientY }));
    },
    [palette, addNode, flow],
  );

  const updateNode = (id, patch) => {
    setNodes((ns) => ns.map((n) => (n.id === id ? { ...n, data: { ...n.data, ...patch } } : n)));
    setSaved(null);
  };
  const removeNode = (id) => {
    setNodes((ns) => ns.filter((n) => n.id !== id));
    setEdges((es) => es.filter((e) => e.source !== id && e.target !== id));
    setSelected(null);
  };
  const renameNode = (id, next) => {
    if (!next || nodes.some((n) => n.id === next)) return;
    setNodes((ns) => ns.map((n) => (n.id === id ? { ...n, id: next } : n.data.map_over === id ? { ...n, data: { ...n.data, map_over: next } } : n)));
    setEdges((es) => es.map((e) => ({ ...e, id: `${e.source === id ? next : e.source}->${e.target === id ? next : e.target}`, source: e.source === id ? next : e.source, target: e.target === id ? next : e.target })));
    setSelected(next);
  };

  async function openTemplate(name, version) {
    if (!name) return;
    setStatus(`Opening ${name}…`);
    try {
      const d = await api(`/api/compose/open/${encodeURIComponent(name)}${version ? `?version=${encodeURIComponent(version)}` : ""}`);
      const doc = d.document;
      const { entrypoint, ...meta } = doc.template;
      setTemplate(meta);
      setFactory(entrypoint || null);
      setBaseRef(doc.base);
      setNextVersion(d.next_version);
      const opened = doc.nodes.map((n) => ({
        id: n.id,
        type: "stage",
        position: n.position,
        data: { kind: n.kind, label: labelFor(n.kind, n.args || {}, palette), args: n.args || {}, map_over: n.map_over || null },
      }));
      if (entrypoint) opened.push({ id: "__factory", type: "factory", position: { x: 60, y: 60 }, data: { entrypoint }, draggable: true, selectable: false });
      setNodes(opened);
      setEdges(doc.edges.map((e) => ({ id: `${e.source}->${e.target}`, source: e.source, target: e.target })));
      setSelected(null);
      setSaved(null);
      setCreated(null);
      setStatus(`Opened ${name} ${doc.base.version}. Changes are saved as a new version (next free: ${d.next_version}).`);
      setTimeout(() => flow.fitView({ padding: 0.2 }), 50);
    } catch (e) {
      setStatus(e.message);
    }
  }

  async function save() {
    setStatus("Saving…");
    try {
      const d = await api("/api/compose/save", { method: "POST", body: { document: document_ } });
      setSaved(d);
      setCreated(null);
      if (d.unchanged) setStatus(`Unchanged: ${d.name} ${d.version} is already published with exactly this manifest.`);
      else {
        setStatus(`Published ${d.name} ${d.version}.`);
        setBaseRef({ name: d.name, version: d.version });
      }
      api("/api/templates").then((t) => setTemplates(t.templates)).catch(() => {});
    } catch (e) {
      if (e.data && e.data.problems) setProblems(e.data.problems);
      setStatus(`Not saved: ${e.message}`);
    }
  }

  async function createDag() {
    if (!saved) return;
    setStatus("Creating the DAG…");
    try {
      const d = await api(`/api/templates/${encodeURIComponent(saved.name)}/instantiate`, { method: "POST", body: { version: saved.version, params: {} } });
      setCreated(d);
      setStatus(`Created DAG ${d.dag_id}; it appears in Airflow once the DAG processor has read it.`);
    } catch (e) {
      setStatus(`Not created: ${e.message}`);
    }
  }

  const node = nodes.find((n) => n.id === selected && n.type === "stage");
  const entrySchema = (n) => {
    const args = n.data.args || {};
    const entry =
      n.data.kind === "simulation"
        ? palette.find((p) => p.id === `simulation:${args.kernel}`)
        : n.data.kind === "template"
          ? palette.find((p) => p.id === `template:${args.name}`)
          : palette.find((p) => p.id === n.data.kind);
    return entry ? entry.schema : { type: "object", properties: {} };
  };
  const inputsOf = (id) => edges.filter((e) => e.target === id).map((e) => e.source);
  const stageIds = nodes.filter((n) => n.type === "stage").map((n) => n.id);
  const errorCount = problems.filter((p) => p.severity !== "warning").length;

  return (
    <div className="composer">
      <header className="bar">
        <h1>Compose Workflow</h1>
        <div className="toolbar">
          <label htmlFor="open-template">Open</label>
          <select id="open-template" value={openName} onChange={(e) => setOpenName(e.target.value)}>
            <option value="">(a published template)</option>
            {templates.map((t) => (
              <option key={t.name} value={t.name}>
                {t.name} {t.version}
              </option>
            ))}
          </select>
          <button type="button" className="small" onClick={() => openTemplate(openName)} disabled={!openName}>
            Open
          </button>
          <button type="button" className="small" id="workflow-settings" onClick={() => { setSelected(null); setNodes((ns) => ns.map((n) => ({ ...n, selected: false }))); }}>
            Workflow settings
          </button>
          <span className={`check ${errorCount ? "bad" : "good"}`} id="check-status" role="status">
            {checking ? "checking…" : errorCount ? `${errorCount} problem${errorCount > 1 ? "s" : ""}` : "valid"}
          </span>
          <button type="button" id="save" onClick={save} disabled={checking || errorCount > 0}>
            Save as version {template.version}
          </button>
        </div>
        <nav>
          <a href={`${base}/templates`}>Gallery</a> <a href={`${base}/resources`}>HPC Resources</a>
        </nav>
      </header>
      <p id="status" className="status" role="status" aria-live="polite">
        {status}
        {saved && !saved.unchanged ? (
          <>
            {" "}
            <button type="button" className="small" id="create-dag" onClick={createDag}>
              Create DAG from {saved.name} {saved.version}
            </button>
          </>
        ) : null}
        {created ? (
          <>
            {" "}
            <a id="dag-link" href={`${airflowBase}/dags/${encodeURIComponent(created.dag_id)}`} target="_top">
              Open {created.dag_id} in Airflow
            </a>
          </>
        ) : null}
      </p>
      <div className="compose-grid">
        <aside className="palette" aria-label="Stage palette">
          <h2>Stages</h2>
          <p className="help">Drag onto the canvas, or focus one and press Enter.</p>
          <ul>
            {palette.map((entry) => (
              <li key={entry.id}>
                <button
                  type="button"
                  className="palette-entry"
                  draggable={!entry.disabled}
                  disabled={!!entry.disabled}
                  title={entry.disabled || entry.description}
                  data-entry={entry.id}
                  onDragStart={(e) => {
                    e.dataTransfer.setData("application/x-hpcai-stage", entry.id);
                    e.dataTransfer.effectAllowed = "move";
                  }}
                  onClick={() => addNode(entry)}
                >
                  {entry.label}
                  <span className="type">→ {entry.output}</span>
                </button>
              </li>
            ))}
          </ul>
          <h2>On the canvas</h2>
          <ul className="stage-list">
            {stageIds.map((id) => (
              <li key={id}>
                <button type="button" className={`small${byNode[id] ? " bad" : ""}`} data-stage={id} onClick={() => { setSelected(id); setNodes((ns) => ns.map((n) => ({ ...n, selected: n.id === id }))); }}>
                  {id}
                  {byNode[id] ? ` (${byNode[id].length})` : ""}
                </button>
              </li>
            ))}
          </ul>
        </aside>
        <div className="canvas" ref={wrapper} onDrop={onDrop} onDragOver={onDragOver} data-testid="canvas">
          <ReactFlow
            nodes={shownNodes}
            edges={edges}
            nodeTypes={nodeTypes}
            onNodesChange={onNodesChange}
            onEdgesChange={onEdgesChange}
            onConnect={onConnect}
            onSelectionChange={onSelectionChange}
            deleteKeyCode={["Delete"]}
            defaultViewport={{ x: 0, y: 0, zoom: 1 }}
            minZoom={0.2}
            maxZoom={1.5}
          >
            <Background />
            <Controls />
          </ReactFlow>
        </div>
        <aside className="inspector" aria-label="Inspector">
          {node ? (
            <div>
              <h2>
                Stage <code>{node.id}</code> <span className="muted">({node.data.label})</span>
              </h2>
              <div className="field">
                <label htmlFor="stage-id">Stage id</label>
                <input id="stage-id" defaultValue={node.id} key={node.id} onBlur={(e) => renameNode(node.id, e.target.value.trim())} />
              </div>
              <fieldset className="inputs">
                <legend>Inputs</legend>
                <ul>
                  {inputsOf(node.id).map((src) => (
                    <li key={src}>
                      {src}{" "}
                      <button type="button" className="small" aria-label={`Disconnect ${src}`} onClick={() => setEdges((es) => es.filter((e) => !(e.source === src && e.target === node.id)))}>
                        remove
                      </button>
                    </li>
                  ))}
                </ul>
                <label htmlFor="connect-from">Connect from</label>
                <select id="connect-from" value={connectFrom} onChange={(e) => setConnectFrom(e.target.value)}>
                  <option value="">(a stage)</option>
                  {stageIds
                    .filter((id) => id !== node.id && !inputsOf(node.id).includes(id))
                    .map((id) => (
                      <option key={id} value={id}>
                        {id}
                      </option>
                    ))}
                </select>
                <button type="button" className="small" id="connect" disabled={!connectFrom} onClick={() => { connect(connectFrom, node.id); setConnectFrom(""); }}>
                  Connect
                </button>
                {(byNode[node.id] || []).filter((p) => p.field === "input").map((p, i) => (
                  <p key={i} className="msg" role="alert">{p.message}</p>
                ))}
              </fieldset>
              {node.data.kind === "simulation" ? (
                <div className="field">
                  <label htmlFor="map-over">Mapped over the output of</label>
                  <select id="map-over" value={node.data.map_over || ""} onChange={(e) => updateNode(node.id, { map_over: e.target.value || null })}>
                    <option value="">(not mapped: one run)</option>
                    {inputsOf(node.id).map((id) => (
                      <option key={id} value={id}>
                        {id} (one run per row)
                      </option>
                    ))}
                  </select>
                  {(byNode[node.id] || []).filter((p) => p.field === "map_over").map((p, i) => (
                    <span key={i} className="msg" role="alert">{p.message}</span>
                  ))}
                </div>
              ) : null}
              {(byNode[node.id] || []).filter((p) => !p.field).map((p, i) => (
                <p key={i} className="msg" role="alert">{p.message}</p>
              ))}
              <SchemaField
                schema={entrySchema(node)}
                value={node.data.args}
                onChange={(v) => updateNode(node.id, { args: v || {} })}
                path=""
                problems={(byNode[node.id] || []).filter((p) => p.field && p.field !== "input" && p.field !== "map_over")}
                idPrefix={`arg-${node.id}`}
              />
              <button type="button" className="small danger" onClick={() => removeNode(node.id)}>
                Remove stage
              </button>
            </div>
          ) : (
            <TemplateForm template={template} setTemplate={(t) => { setTemplate(t); setSaved(null); }} problems={templateProblems} nextVersion={nextVersion} />
          )}
          {templateProblems.length && node ? (
            <div className="template-problems" role="alert">
              <h3>Workflow</h3>
              {templateProblems.map((p, i) => (
                <p key={i} className="msg">{p.field ? `${p.field}: ` : ""}{p.message}</p>
              ))}
              <button type="button" className="small" onClick={() => setSelected(null)}>Workflow settings</button>
            </div>
          ) : null}
        </aside>
      </div>
    </div>
  );
}

function TemplateForm({ template, setTemplate, problems, nextVersion }) {
  const set = (key, value) => {
    const next = { ...template };
    if (value === undefined || value === "") delete next[key];
    else next[key] = value;
    setTemplate(next);
  };
  const field = (key, label, extra = {}) => (
    <div className={`field${problems.some((p) => p.field === key) ? " invalid" : ""}`} key={key}>
      <label htmlFor={`tpl-${key}`}>{label}</label>
      {extra.textarea ? (
        <textarea id={`tpl-${key}`} rows={3} value={template[key] ?? ""} onChange={(e) => set(key, e.target.value)} />
      ) : (
        <input id={`tpl-${key}`} value={template[key] ?? ""} onChange={(e) => set(key, e.target.value)} />
      )}
      {problems.filter((p) => p.field === key).map((p, i) => (
        <span key={i} className="msg" role="alert">{p.message}</span>
      ))}
    </div>
  );
  return (
    <div>
      <h2>Workflow</h2>
      <p className="help">Select a stage to configure it. A saved version never changes: a changed workflow needs a new version.</p>
      {field("name", "Template name")}
      {field("version", "Version")}
      {nextVersion && nextVersion !== template.version ? (
        <button type="button" className="small" id="use-next-version" onClick={() => set("version", nextVersion)}>
          Use next version {nextVersion}
        </button>
      ) : null}
      {field("title", "Title")}
      {field("description", "Description", { textarea: true })}
      <div className={`field${problems.some((p) => p.field === "parameters") ? " invalid" : ""}`}>
        <label htmlFor="tpl-parameters">Parameters (JSON Schema; stages name them as {"{{ params.x }}"})</label>
        <JsonField id="tpl-parameters" label="Parameters" rows={6} value={template.parameters} onChange={(v) => set("parameters", v)} />
      </div>
      <div className={`field${problems.some((p) => p.field === "resources") ? " invalid" : ""}`}>
        <label htmlFor="tpl-resources">Default resources (JSON)</label>
        <JsonField id="tpl-resources" label="Default resources" rows={3} value={template.resources} onChange={(v) => set("resources", v)} />
      </div>
      <div className="field">
        <label htmlFor="tpl-backends">Backends (comma-separated)</label>
        <input id="tpl-backends" value={(template.backends || []).join(", ")} onChange={(e) => set("backends", e.target.value.split(",").map((w) => w.trim()).filter(Boolean))} />
      </div>
      {problems.filter((p) => !["name", "version", "title", "description"].includes(p.field)).map((p, i) => (
        <p key={i} className="msg" role="alert">{p.field ? `${p.field}: ` : ""}{p.message}</p>
      ))}
    </div>
  );
}

createRoot(document.getElementById("root")).render(
  <ReactFlowProvider>
    <Composer />
  </ReactFlowProvider>,
);
