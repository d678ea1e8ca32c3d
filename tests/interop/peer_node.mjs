// A worker built on the official Node SDK (`iii-sdk` on npm), driven by the tests.
//
// Run as `node peer_node.mjs` with III_URL pointing at the engine, PEER_NAME
// naming the worker and III_TEST_NODE_MODULES the node_modules directory that
// holds iii-sdk. The protocol is the one of peer_python.py: events on stdout
// as `@@interop {json}` lines, commands on stdin as JSON lines
// (`call`, `state`, `exit`), one reply per command with the same `id`.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

const MARK = "@@interop ";
const PREFIX = "interop::node::";
const RUNTIME = "node";

function emit(event) {
  process.stdout.write(MARK + JSON.stringify(event) + "\n");
}

// The SDK is imported from the directory the tests name, through the ESM entry
// its package.json exports, so no install next to this file is needed.
async function loadSdk() {
  const root = join(process.env.III_TEST_NODE_MODULES, "iii-sdk");
  const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const entry = manifest.exports?.["."]?.import ?? manifest.main;
  return import(pathToFileURL(join(root, entry)).href);
}

// The functions this worker serves

async function echo(data, metadata) {
  return { runtime: RUNTIME, echo: data, metadata: metadata ?? null };
}

async function note(data) {
  emit({ event: "noted", data });
  return null;
}

// Answers only after data.seconds: a call the test can leave in flight.
async function hang(data) {
  await new Promise((resolve) => setTimeout(resolve, data.seconds * 1000));
  return { runtime: RUNTIME, hung: data.seconds };
}

async function fail(data) {
  throw new Error(`node peer failed on purpose: ${data?.why}`);
}

async function httpReply(data) {
  return {
    status_code: 201,
    headers: { "x-interop-runtime": RUNTIME },
    body: {
      runtime: RUNTIME,
      method: data.method,
      path: data.path,
      path_params: data.path_params,
      query_params: data.query_params,
      received: data.body,
    },
  };
}

// Commands from the test

async function call(worker, command) {
  try {
    const result = await worker.trigger({
      function_id: command.function_id,
      payload: command.payload,
      timeoutMs: command.timeout_ms ?? 10000,
      metadata: command.metadata ?? undefined,
      action: command.void ? { type: "void" } : undefined,
    });
    return { ok: true, result: result ?? null };
  } catch (error) {
    return {
      ok: false,
      code: error.code ?? "PEER_EXCEPTION",
      message: wireMessage(error),
      stacktrace: error.stacktrace ?? null,
    };
  }
}

// The SDK's InvocationError reads "<code>: <message>"; the test wants the
// message as it travelled.
function wireMessage(error) {
  const text = error.message ?? String(error);
  const prefix = `${error.code}: `;
  return error.code && text.startsWith(prefix) ? text.slice(prefix.length) : text;
}

async function state(worker) {
  // 0.22 has no getConnectionState() and no public workerId; the instance
  // keeps both.
  return {
    ok: true,
    state: worker.getConnectionState?.() ?? worker.connectionState,
    worker_id: worker.workerId ?? null,
  };
}

const COMMANDS = { call, state };

async function answer(worker, command) {
  let reply;
  try {
    reply = await COMMANDS[command.op](worker, command);
  } catch (error) {
    reply = { ok: false, code: "PEER_EXCEPTION", message: String(error) };
  }
  emit({ ...reply, id: command.id });
}

async function main() {
  const { registerWorker } = await loadSdk();
  const worker = registerWorker(process.env.III_URL, {
    workerName: process.env.PEER_NAME,
    invocationTimeoutMs: 10000,
  });
  worker.registerFunction(PREFIX + "echo", echo, { description: "echoes its input" });
  worker.registerFunction(PREFIX + "fail", fail, { description: "always throws" });
  worker.registerFunction(PREFIX + "http", httpReply, { description: "http reply" });
  worker.registerFunction(PREFIX + "note", note, { description: "reports its input" });
  worker.registerFunction(PREFIX + "hang", hang, { description: "answers late" });
  worker.registerTrigger({
    type: "http",
    function_id: PREFIX + "http",
    config: { api_path: "interop/node/:item", http_method: "POST" },
  });
  emit({ event: "ready", pid: process.pid });

  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const command = JSON.parse(line);
    if (command.op === "exit") break;
    answer(worker, command);
  }
  await worker.shutdown();
  emit({ event: "bye" });
  process.exit(0);
}

main().catch((error) => {
  emit({ event: "crashed", message: String(error?.stack ?? error) });
  process.exit(1);
});
