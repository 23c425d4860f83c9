// Clients nobody here wrote, as a new user would use them, against the real
// server (SESSIONLOG_BIN, started here on a free loopback port and a Unix
// socket): @grpc/grpc-js with @grpc/proto-loader (a producer and a follower
// that resumes from its cursor, over TCP and the socket, gzip-compressed
// requests, a Value with no kind refused) and the OpenTelemetry JS SDK's
// OTLP/gRPC log exporter (gzip, as Collectors send). Run by .ci/node.sh.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { LoggerProvider, BatchLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-grpc';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { SeverityNumber } from '@opentelemetry/api-logs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = process.env.SESSIONLOG_BIN ?? join(root, 'target', 'debug', 'sessionlog');

const definition = protoLoader.loadSync(join(root, 'proto', 'sessionlog', 'v1', 'sessionlog.proto'), {
  includeDirs: [join(root, 'proto')],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { SessionLog } = grpc.loadPackageDefinition(definition).sessionlog.v1;

let server;
let dir;
let tcp;
let socket;

/** Starts `sessionlog serve` and resolves once both listeners serve. */
function startServer() {
  dir = mkdtempSync(join(tmpdir(), 'sessionlog-node-'));
  socket = join(dir, 'sessionlog.sock');
  server = spawn(
    bin,
    ['serve', '--data-dir', join(dir, 'data'), '--listen', '127.0.0.1:0', '--listen', `unix:${socket}`,
      '--log-format', 'json', '--shutdown-grace', '5s'],
    { env: { ...process.env, RUST_LOG: 'info' }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return new Promise((resolve, reject) => {
    const listening = [];
    const lines = createInterface({ input: server.stderr });
    const timer = setTimeout(() => reject(new Error('the server did not start within 60 s')), 60_000);
    server.once('exit', (code) => reject(new Error(`the server exited with ${code}`)));
    lines.on('line', (line) => {
      const fields = JSON.parse(line).fields ?? {};
      if (fields.message !== 'serving') return;
      listening.push(fields.listen);
      if (listening.length === 2) {
        clearTimeout(timer);
        tcp = listening.find((addr) => !addr.startsWith('unix:'));
        resolve();
      }
    });
  });
}

before(startServer);

after(async () => {
  const exited = new Promise((resolve) => server.once('exit', (code) => resolve(code)));
  server.kill('SIGTERM');
  assert.equal(await exited, 0, 'the server stops cleanly on SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

function client(target, options = {}) {
  return new SessionLog(target, grpc.credentials.createInsecure(), options);
}

/** A unary call as a promise. */
function call(stub, method, request) {
  return new Promise((resolve, reject) => {
    stub[method](request, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

function text(value) {
  return { stringValue: value };
}

function entry(message, fields) {
  return { level: 'LEVEL_INFO', logger: 'node', message, fields: fields ?? null };
}

/** Follows `session_id` after `after_seq` until `ended`; the entries and the cursors. */
function followToEnd(stub, session_id, after_seq) {
  return new Promise((resolve, reject) => {
    const entries = [];
    let caughtUp = null;
    const stream = stub.Follow({ session_id, after_seq });
    stream.on('data', (response) => {
      if (response.batch) entries.push(...response.batch.entries);
      if (response.caught_up) caughtUp = response.caught_up.cursor;
      if (response.ended) resolve({ entries, caughtUp, ended: response.ended });
    });
    stream.on('error', reject);
  });
}

test('a grpc-js producer and follower: every entry once, in order, resumed with no gap', async () => {
  const producer = client(tcp);
  const session = await call(producer, 'StartSession', {
    app_name: 'node-producer',
    metadata: { fields: { branch: text('main'), attempt: { numberValue: 2 } } },
  });
  const id = session.id;
  const first = await call(producer, 'Append', {
    session_id: id,
    batch_id: 'b1',
    entries: [
      entry('compiling', { fields: { file: text('main.c'), tags: { listValue: { values: [text('a'), { nullValue: 'NULL_VALUE' }] } } } }),
      entry('linking'),
    ],
  });
  assert.deepEqual([first.first_seq, first.last_seq], ['1', '2']);
  const retried = await call(producer, 'Append', { session_id: id, batch_id: 'b1', entries: [entry('compiling'), entry('linking')] });
  assert.equal(retried.duplicate, true, 'a retried batch id is stored once');

  // A follower over the Unix socket with grpc-js's default options.
  const follower = client(`unix:${socket}`);
  const following = followToEnd(follower, id, '0');
  await call(producer, 'Append', { session_id: id, entries: [entry('testing'), entry('done')] });
  await call(producer, 'EndSession', { session_id: id, reason: 'exit code 0' });
  const { entries, ended } = await following;
  assert.deepEqual(entries.map((e) => e.seq), ['1', '2', '3', '4', '5']);
  assert.deepEqual(entries.map((e) => e.message), ['compiling', 'linking', 'testing', 'done', 'Session ended: exit code 0']);
  assert.equal(entries[0].fields.fields.file.stringValue, 'main.c');
  assert.equal(entries[0].fields.fields.tags.listValue.values[1].kind, 'nullValue');
  assert.equal(ended.state, 'SESSION_STATE_ENDED');
  assert.equal(ended.metadata.fields.attempt.numberValue, 2);

  // Resuming from a cursor: exactly the entries after it.
  const resumed = await followToEnd(client(tcp), id, '2');
  assert.deepEqual(resumed.entries.map((e) => e.seq), ['3', '4', '5']);
  assert.equal(resumed.caughtUp, '5');
});

test('gzip-compressed requests from grpc-js are served', async () => {
  const gzip = client(tcp, { 'grpc.default_compression_algorithm': 2 });
  const session = await call(gzip, 'StartSession', { app_name: 'node-gzip' });
  const appended = await call(gzip, 'Append', {
    session_id: session.id,
    entries: Array.from({ length: 50 }, (_, i) => entry(`line ${i} ${'compressible '.repeat(20)}`)),
  });
  assert.equal(appended.last_seq, '50');
  const read = await call(gzip, 'Read', { session_id: session.id, limit: 100 });
  assert.equal(read.entries.length, 50);
});

test('a Value with no kind (a misspelt oneof) is refused with INVALID_ARGUMENT naming the field', async () => {
  const stub = client(tcp);
  const session = await call(stub, 'StartSession', { app_name: 'node-kindless' });
  // `strValue` is no field of Value: protobufjs sends a Value with no kind.
  await assert.rejects(
    call(stub, 'Append', { session_id: session.id, entries: [entry('x', { fields: { oops: { strValue: 'y' } } })] }),
    (err) => err.code === grpc.status.INVALID_ARGUMENT && /entries\.fields/.test(err.details) && /`oops`/.test(err.details),
  );
  // Nothing was stored; the session still reads.
  const read = await call(stub, 'Read', { session_id: session.id });
  assert.equal(read.entries.length, 0);
  const got = await call(stub, 'GetSession', { session_id: session.id });
  assert.equal(got.last_seq, '0');
});

test('the OpenTelemetry JS OTLP/gRPC log exporter (gzip) lands in a session', async () => {
  const sessionId = `otel-js-${process.pid}`;
  const exporter = new OTLPLogExporter({ url: `http://${tcp}`, compression: 'gzip' });
  const provider = new LoggerProvider({
    resource: resourceFromAttributes({ 'session.id': sessionId, 'service.name': 'node-builder' }),
    // One export for the three records, so their order is the SDK's.
    processors: [new BatchLogRecordProcessor({ exporter })],
  });
  const logger = provider.getLogger('builder.disk');
  logger.emit({ severityNumber: SeverityNumber.INFO, severityText: 'INFO', body: 'starting' });
  logger.emit({ severityNumber: SeverityNumber.WARN, severityText: 'WARN', body: 'disk almost full', attributes: { pct: 93, mount: '/var' } });
  logger.emit({ severityNumber: SeverityNumber.ERROR, body: { count: 7, ratio: 0.5 } });
  await provider.forceFlush();
  await provider.shutdown();

  const stub = client(tcp);
  const session = await call(stub, 'GetSession', { session_id: sessionId });
  assert.equal(session.app_name, 'node-builder');
  const read = await call(stub, 'Read', { session_id: sessionId });
  assert.deepEqual(read.entries.map((e) => e.message), ['starting', 'disk almost full', '{"count":7,"ratio":0.5}']);
  assert.deepEqual(read.entries.map((e) => e.level), ['LEVEL_INFO', 'LEVEL_WARN', 'LEVEL_ERROR']);
  assert.equal(read.entries[1].logger, 'builder.disk');
  assert.equal(read.entries[1].fields.fields.pct.numberValue, 93);
  assert.equal(read.entries[1].fields.fields.mount.stringValue, '/var');
});
