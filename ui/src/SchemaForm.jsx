// A form generated from a JSON Schema: objects become fieldsets, enums selects, numbers number
// inputs, lists of words one comma-separated input; anything else is edited as JSON.
// Unset fields stay absent from the value (so an opened manifest saves back unchanged).
import React, { useEffect, useState } from "react";

function typeOf(schema) {
  const t = schema.type;
  if (Array.isArray(t)) return t.find((x) => x !== "null") || "string";
  if (t) return t;
  if (schema.enum) return "enum";
  if (schema.properties) return "object";
  return "json";
}

function fieldId(idPrefix, path) {
  return `${idPrefix}-${path.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

function Messages({ problems, path }) {
  const mine = problems.filter((p) => p.field === path);
  if (!mine.length) return null;
  return (
    <span className="msg" role="alert">
      {mine.map((p) => p.message).join("; ")}
    </span>
  );
}

function parseScalar(text, itemType) {
  if (itemType === "integer" || itemType === "number") {
    const n = Number(text);
    return text.trim() === "" || Number.isNaN(n) ? text : n;
  }
  return text;
}

export function JsonField({ id, value, onChange, label, rows = 2 }) {
  const [text, setText] = useState(value === undefined ? "" : JSON.stringify(value));
  const [bad, setBad] = useState(false);
  useEffect(() => {
    setText(value === undefined ? "" : JSON.stringify(value));
  }, [JSON.stringify(value)]);
  return (
    <>
      <textarea
        id={id}
        aria-label={label}
        rows={rows}
        value={text}
        className={bad ? "bad" : ""}
        onChange={(e) => {
          setText(e.target.value);
          if (e.target.value.trim() === "") {
            setBad(false);
            onChange(undefined);
            return;
          }
          try {
            onChange(JSON.parse(e.target.value));
            setBad(false);
          } catch (err) {
            setBad(true);
          }
        }}
      />
      {bad ? <span className="msg">not JSON yet</span> : null}
    </>
  );
}

export function SchemaField({ schema, value, onChange, path, label, problems, idPrefix, depth = 0 }) {
  const id = fieldId(idPrefix, path || "root");
  const title = schema.title || label || path;
  const help = schema.description;
  const kind = typeOf(schema);
  const invalid = problems.some((p) => p.field === path);
  if (schema.const !== undefined) {
    return (
      <div className="field">
        <label htmlFor={id}>{title}</label>
        <input id={id} value={String(schema.const)} readOnly aria-readonly="true" />
      </div>
    );
  }
  if (kind === "object" && schema.properties) {
    const current = value && typeof value === "object" ? value : {};
    const set = (key, v) => {
      const next = { ...current };
      if (v === undefined) delete next[key];
      else next[key] = v;
      onChange(Object.keys(next).length ? next : undefined);
    };
    const body = Object.entries(schema.properties).map(([key, sub]) => (
      <SchemaField
        key={key}
        schema={sub}
        value={current[key]}
        onChange={(v) => set(key, v)}
        path={path ? `${path}/${key}` : key}
        label={key}
        problems={problems}
        idPrefix={idPrefix}
        depth={depth + 1}
      />
    ));
    if (depth === 0) return <div className="form-root">{body}</div>;
    const open = problems.some((p) => p.field && path && p.field.startsWith(path)) || Object.keys(current).length > 0;
    return (
      <details className={`fieldset${invalid ? " invalid" : ""}`} open={open || depth <= 1}>
        <summary>{title}</summary>
        <Messages problems={problems} path={path} />
        {body}
      </details>
    );
  }
  let input;
  const placeholder = schema.default !== undefined && schema.default !== null ? String(schema.default) : "";
  if (schema.enum) {
    input = (
      <select id={id} value={value === undefined ? "" : String(value)} onChange={(e) => onChange(e.target.value === "" ? undefined : schema.enum.find((x) => String(x) === e.target.value))}>
        <option value="">{placeholder ? `(default: ${placeholder})` : "(unset)"}</option>
        {schema.enum.map((x) => (
          <option key={String(x)} value={String(x)}>
            {String(x)}
          </option>
        ))}
      </select>
    );
  } else if (kind === "integer" || kind === "number") {
    input = (
      <input
        id={id}
        type="number"
        step={kind === "integer" ? 1 : "any"}
        placeholder={placeholder}
        value={value === undefined || value === null ? "" : String(value)}
        onChange={(e) => onChange(e.target.value === "" ? undefined : Number(e.target.value))}
      />
    );
  } else if (kind === "boolean") {
    input = (
      <select id={id} value={value === undefined ? "" : String(value)} onChange={(e) => onChange(e.target.value === "" ? undefined : e.target.value === "true")}>
        <option value="">{placeholder ? `(default: ${placeholder})` : "(unset)"}</option>
        <option value="true">yes</option>
        <option value="false">no</option>
      </select>
    );
  } else if (kind === "string") {
    const long = schema.format === "textarea" || (schema.maxLength || 0) > 1000;
    input = long ? (
      <textarea id={id} rows={4} placeholder={placeholder} value={value ?? ""} onChange={(e) => onChange(e.target.value === "" ? undefined : e.target.value)} />
    ) : (
      <input id={id} type="text" placeholder={placeholder} value={value ?? ""} onChange={(e) => onChange(e.target.value === "" ? undefined : e.target.value)} />
    );
  } else if (kind === "array" && schema.items && ["string", "integer", "number"].includes(typeOf(schema.items)) && !schema.items.enum) {
    const itemType = typeOf(schema.items);
    input = (
      <input
        id={id}
        type="text"
        placeholder={Array.isArray(schema.default) ? schema.default.join(", ") : "comma-separated"}
        value={Array.isArray(value) ? value.join(", ") : ""}
        onChange={(e) =>
          onChange(e.target.value.trim() === "" ? undefined : e.target.value.split(",").map((w) => parseScalar(w.trim(), itemType)))
        }
      />
    );
  } else {
    input = <JsonField id={id} value={value} onChange={onChange} label={title} />;
  }
  return (
    <div className={`field${invalid ? " invalid" : ""}`}>
      <label htmlFor={id}>{title}</label>
      {input}
      {help ? <span className="help">{help}</span> : null}
      <Messages problems={problems} path={path} />
    </div>
  );
}
