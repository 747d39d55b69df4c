// The hand-written declarations (wsgate.d.ts) against the library: they must
// compile with the TypeScript compiler in strict mode, fit the documented
// usage (test/usage.ts), and declare only what wsgate.js really exports,
// with the same kind (function, class, method, property).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import * as lib from "../wsgate.js";

const here = dirname(fileURLToPath(import.meta.url));
const dts = join(here, "..", "wsgate.d.ts");

test("wsgate.d.ts compiles and test/usage.ts type-checks against it (strict)", () => {
  const program = ts.createProgram([join(here, "usage.ts")], {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
    types: [],
  });
  const diags = ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file ? `${d.file.fileName}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}: ` : "";
    return where + ts.flattenDiagnosticMessageText(d.messageText, "\n");
  });
  assert.deepEqual(diags, [], "TypeScript diagnostics");
});

/** declared lists the d.ts's exports: name -> {kind, members: Map(name -> "method"|"property"|"optional")}. */
function declared() {
  const src = ts.createSourceFile(dts, readFileSync(dts, "utf8"), ts.ScriptTarget.ES2022, true);
  const out = new Map();
  const exported = (n) => n.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
  for (const st of src.statements) {
    if (!exported(st)) continue;
    if (ts.isClassDeclaration(st)) {
      const members = new Map();
      for (const m of st.members) {
        if (ts.isMethodDeclaration(m)) members.set(m.name.getText(src), "method");
        else if (ts.isPropertyDeclaration(m)) members.set(m.name.getText(src), m.questionToken ? "optional" : "property");
      }
      out.set(st.name.text, { kind: "class", members });
    } else if (ts.isFunctionDeclaration(st)) {
      out.set(st.name.text, { kind: "function" });
    } else if (ts.isVariableStatement(st)) {
      for (const d of st.declarationList.declarations) out.set(d.name.getText(src), { kind: "value" });
    }
  }
  return out;
}

test("every declaration in wsgate.d.ts exists in wsgate.js with the same kind", () => {
  const decl = declared();
  assert.ok(decl.size >= 8, `only ${decl.size} exports found in wsgate.d.ts`);
  const samples = {
    Client: () => new lib.Client({ url: "ws://127.0.0.1:1/ws", token: "t", WebSocket: class {} }),
    SeenIDs: () => new lib.SeenIDs(4),
    WsgateError: () => new lib.WsgateError("x", "y"),
  };
  const problems = [];
  for (const [name, d] of decl) {
    const v = lib[name];
    if (v === undefined) { problems.push(`${name}: declared, not exported`); continue; }
    if (d.kind === "value") continue;
    if (typeof v !== "function") { problems.push(`${name}: declared as ${d.kind}, is ${typeof v}`); continue; }
    if (d.kind !== "class") continue;
    const inst = samples[name]?.();
    assert.ok(inst, `no sample instance for class ${name}`);
    for (const [m, kind] of d.members) {
      if (kind === "optional") continue; // set only when it applies (e.g. WsgateError.closeCode)
      if (!(m in inst)) problems.push(`${name}.${m}: declared ${kind}, missing`);
      else if (kind === "method" && typeof inst[m] !== "function") problems.push(`${name}.${m}: declared method, is ${typeof inst[m]}`);
      else if (kind === "property" && typeof inst[m] === "function") problems.push(`${name}.${m}: declared property, is a function`);
    }
  }
  assert.deepEqual(problems, []);
});

test("every public export of wsgate.js is declared", () => {
  const decl = declared();
  const missing = Object.keys(lib).filter((k) => !k.startsWith("_") && !decl.has(k));
  assert.deepEqual(missing, [], "exported by wsgate.js but not in wsgate.d.ts");
});
