// Check Flux files with InfluxData's Flux language server (the WebAssembly build).
//
//   node check.mjs FILE.flux...    prints one JSON object: {"FILE": [diagnostics...], ...}
//
// The package's JS glue imports its .wasm as an ES module, which Node does not support, so
// this loader instantiates the WebAssembly module itself and hands its exports to the glue.
// Each document gets a fresh Lsp instance: a shared one re-publishes stale diagnostics.
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const require = createRequire(import.meta.url);
const pkg = dirname(require.resolve("@influxdata/flux-lsp-browser/package.json"));
const GLUE = "./flux-lsp-browser_bg.js";

async function loadLsp() {
  const source = readFileSync(join(pkg, "flux-lsp-browser_bg.js"), "utf8");
  // The glue's top level also reads wasm.memory: those lines move into the setter.
  const memoryInits = source.match(/^cached\w+Memory0 = new \w+\(wasm\.memory\.buffer\);$/gm) ?? [];
  let patched = source.replace(/^cached\w+Memory0 = new \w+\(wasm\.memory\.buffer\);$/gm, "");
  patched = patched.replace(
    /^import \* as wasm from ['"]\.\/flux-lsp-browser_bg\.wasm['"];?$/m,
    `let wasm; export function __catcherSetWasm(exports) { wasm = exports; ${memoryInits.join(" ")} }`,
  );
  if (!patched.includes("__catcherSetWasm")) {
    throw new Error("flux-lsp-browser glue has an unexpected shape");
  }
  const dir = mkdtempSync(join(tmpdir(), "flux-lsp-"));
  const gluePath = join(dir, "glue.mjs");
  writeFileSync(gluePath, patched);
  const glue = await import(pathToFileURL(gluePath).href);
  const module = new WebAssembly.Module(readFileSync(join(pkg, "flux-lsp-browser_bg.wasm")));
  const instance = new WebAssembly.Instance(module, { [GLUE]: glue });
  glue.__catcherSetWasm(instance.exports);
  return glue;
}

async function check(glue, uri, text) {
  const lsp = new glue.Lsp();
  let found;
  const diagnostics = new Promise((resolveDiagnostics) => {
    found = resolveDiagnostics;
  });
  lsp.onMessage((raw) => {
    const message = JSON.parse(raw);
    if (message.method === "textDocument/publishDiagnostics" && message.params.uri === uri) {
      found(message.params.diagnostics);
    }
  });
  const running = lsp.run();
  running.catch((error) => found(Promise.reject(error)));
  const send = (body) => lsp.send(JSON.stringify({ jsonrpc: "2.0", ...body }));
  await send({ id: 1, method: "initialize", params: { capabilities: {} } });
  await send({ method: "initialized", params: {} });
  await send({
    method: "textDocument/didOpen",
    params: { textDocument: { uri, languageId: "flux", version: 1, text } },
  });
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no diagnostics for ${uri}`)), 20000);
  });
  try {
    return await Promise.race([diagnostics, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const glue = await loadLsp();
const results = {};
for (const file of process.argv.slice(2)) {
  const uri = pathToFileURL(resolve(file)).href;
  results[file] = await check(glue, uri, readFileSync(file, "utf8"));
}
process.stdout.write(JSON.stringify(results) + "\n");
process.exit(0);
