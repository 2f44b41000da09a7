/* A form generated from a template's JSON Schema (type: object, flat properties). */
"use strict";
const SchemaForm = (() => {
  const { h, clear } = HPCAI;

  function kindOf(spec) {
    if (Array.isArray(spec.enum)) return "enum";
    const type = Array.isArray(spec.type) ? spec.type.find((t) => t !== "null") : spec.type;
    if (type === "array" && spec.items && ["string", "integer", "number"].includes(spec.items.type)) return "list";
    if (["string", "integer", "number", "boolean"].includes(type)) return type;
    return "json";
  }

  function build(container, schema) {
    clear(container);
    const props = (schema && schema.properties) || {};
    const required = new Set((schema && schema.required) || []);
    if (!Object.keys(props).length) container.append(h("p", { class: "muted" }, "This template takes no parameters."));
    for (const [key, spec] of Object.entries(props)) {
      const kind = kindOf(spec || {});
      const id = `param-${key}`;
      let input;
      const hasDefault = spec.default !== undefined;
      if (kind === "enum") {
        input = h("select", { id, name: key });
        if (!required.has(key) && !hasDefault) input.append(h("option", { value: "" }, "—"));
        spec.enum.forEach((value, i) => input.append(h("option", { value: String(i), selected: hasDefault && JSON.stringify(value) === JSON.stringify(spec.default) }, String(value))));
      } else if (kind === "boolean") {
        input = h("input", { id, name: key, type: "checkbox", checked: spec.default === true });
      } else if (kind === "integer" || kind === "number") {
        input = h("input", { id, name: key, type: "number", step: kind === "integer" ? "1" : "any", min: spec.minimum, max: spec.maximum, value: hasDefault ? spec.default : undefined });
      } else if (kind === "string") {
        input = (spec.maxLength || 0) > 300
          ? h("textarea", { id, name: key, rows: 4, maxlength: spec.maxLength }, hasDefault ? spec.default : "")
          : h("input", { id, name: key, type: "text", maxlength: spec.maxLength, value: hasDefault ? spec.default : undefined });
      } else if (kind === "list") {
        input = h("input", { id, name: key, type: "text", placeholder: "comma-separated", value: hasDefault ? spec.default.join(", ") : undefined });
      } else {
        input = h("textarea", { id, name: key, rows: 4, placeholder: "JSON" }, hasDefault ? JSON.stringify(spec.default, null, 2) : "");
      }
      input.dataset.kind = kind;
      const field = h("div", { class: "field", id: `field-${key}`, dataset: { param: key } },
        h("label", { for: id }, spec.title || key, required.has(key) ? " *" : ""),
        input,
        spec.description ? h("span", { class: "help" }, spec.description) : null,
        h("span", { class: "msg", id: `msg-${key}`, "aria-live": "polite" }));
      container.append(field);
    }
  }

  /* Returns {values, errors}: values to send (empty optional fields are left out). */
  function read(container, schema) {
    const props = (schema && schema.properties) || {};
    const values = {}; const errors = [];
    for (const [key, spec] of Object.entries(props)) {
      const input = container.querySelector(`[name="${CSS.escape(key)}"]`);
      if (!input) continue;
      const kind = input.dataset.kind; const raw = input.value;
      if (kind === "boolean") { values[key] = input.checked; continue; }
      if (kind === "enum") { if (raw !== "") values[key] = spec.enum[Number(raw)]; continue; }
      if (raw.trim() === "") continue;
      if (kind === "integer" || kind === "number") {
        const n = Number(raw);
        if (!Number.isFinite(n) || (kind === "integer" && !Number.isInteger(n))) errors.push({ path: key, message: `must be ${kind === "integer" ? "a whole number" : "a number"}` });
        else values[key] = n;
      } else if (kind === "string") values[key] = raw;
      else if (kind === "list") {
        const items = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
        values[key] = spec.items.type === "string" ? items : items.map(Number);
      } else {
        try { values[key] = JSON.parse(raw); } catch (e) { errors.push({ path: key, message: "is not valid JSON" }); }
      }
    }
    return { values, errors };
  }

  /* Quick checks in the browser; the server's validation is the one that counts. */
  function check(schema, values) {
    const errors = [];
    const props = (schema && schema.properties) || {};
    for (const key of (schema && schema.required) || []) if (values[key] === undefined) errors.push({ path: key, message: "is required" });
    for (const [key, value] of Object.entries(values)) {
      const spec = props[key] || {};
      if (typeof value === "number") {
        if (spec.minimum !== undefined && value < spec.minimum) errors.push({ path: key, message: `must be at least ${spec.minimum}` });
        if (spec.maximum !== undefined && value > spec.maximum) errors.push({ path: key, message: `must be at most ${spec.maximum}` });
      }
      if (typeof value === "string") {
        if (spec.minLength !== undefined && value.length < spec.minLength) errors.push({ path: key, message: `needs at least ${spec.minLength} characters` });
        if (spec.maxLength !== undefined && value.length > spec.maxLength) errors.push({ path: key, message: `takes at most ${spec.maxLength} characters` });
        if (spec.pattern) { try { if (!new RegExp(spec.pattern, "u").test(value)) errors.push({ path: key, message: `must match ${spec.pattern}` }); } catch (e) { /* server decides */ } }
      }
    }
    return errors;
  }

  /* errors: [{path: "a/b", message}] -> messages beside fields; the rest returned. */
  function showErrors(container, errors) {
    container.querySelectorAll(".field").forEach((f) => { f.classList.remove("invalid"); f.querySelector(".msg").textContent = ""; });
    const rest = [];
    for (const err of errors || []) {
      const required = /^'([^']+)' is a required property/.exec(err.message || "");
      const key = String(err.path || "").split("/")[0] || (required ? required[1] : "");
      const field = key && container.querySelector(`#field-${CSS.escape(key)}`);
      if (field) { field.classList.add("invalid"); const msg = field.querySelector(".msg"); msg.textContent = msg.textContent ? `${msg.textContent}; ${err.message}` : err.message; }
      else rest.push(err.path ? `${err.path}: ${err.message}` : err.message);
    }
    return rest;
  }

  return { build, read, check, showErrors };
})();
