// The web console in a real browser: Debian's chromium driven by
// playwright-core (no browser download), against the real `sessionlog`
// binary with a token file. Sessions are started, appended to and ended
// through gRPC with the `sessionlog` CLI; the page must show them live.
// Plain node with assertions; every wait is on a condition with a timeout.
//
//   SESSIONLOG_BIN   the binary (default target/debug/sessionlog)
//   FIELDS_BIN       the tracing_layer example, which logs entries with
//                    fields and trace ids (default target/debug/examples/tracing_layer)
//   ARTIFACTS        where screenshots go (default target/browser-artifacts)
//   CHROMIUM         the browser (default /usr/bin/chromium)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = process.env.SESSIONLOG_BIN || path.join(root, 'target/debug/sessionlog');
const fieldsBin = process.env.FIELDS_BIN || path.join(root, 'target/debug/examples/tracing_layer');
const artifacts = process.env.ARTIFACTS || path.join(root, 'target/browser-artifacts');
const WAIT = 15_000; // the most any one condition may take
const TOKEN = 'browser-' + Math.random().toString(36).slice(2);

const tmp = mkdtempSync(path.join(tmpdir(), 'sessionlog-browser-'));
const tokenFile = path.join(tmp, 'token');
writeFileSync(tokenFile, TOKEN + '\n');
mkdirSync(artifacts, { recursive: true });
const serverLog = [];

// Starts `serve` on the given addresses (port 0 at first, the same ports
// after a restart) and reads the bound ones from its JSON log.
function startServer(grpc = '127.0.0.1:0', http = '127.0.0.1:0') {
  const child = spawn(bin, [
    'serve', '--data-dir', path.join(tmp, 'data'), '--listen', grpc, '--http-listen', http,
    '--auth-token-file', tokenFile, '--log-format', 'json', '--shutdown-grace', '5s',
  ], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RUST_LOG: 'info' } });
  return new Promise((resolve, reject) => {
    const found = {};
    const timer = setTimeout(() => reject(new Error('the server did not start within 30 s')), 30_000);
    child.on('exit', (code) => reject(new Error(`the server exited with ${code} while starting`)));
    readline.createInterface({ input: child.stderr }).on('line', (line) => {
      serverLog.push(line);
      let log;
      try { log = JSON.parse(line); } catch { return; }
      const message = log.fields && log.fields.message;
      if (message === 'serving') found.grpc = log.fields.listen;
      if (message === 'serving http') found.http = log.fields.listen;
      if (found.grpc && found.http && !found.done) {
        found.done = true;
        clearTimeout(timer);
        resolve({ child, grpc: found.grpc, http: found.http });
      }
    });
  });
}

// SIGTERM, and a clean exit (status 0) within 30 s.
function stopServer(server) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      server.child.kill('SIGKILL');
      reject(new Error('the server was still running 30 s after SIGTERM'));
    }, 30_000);
    server.child.removeAllListeners('exit');
    server.child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`the server exited with ${code ?? signal} after SIGTERM`));
    });
    server.child.kill('SIGTERM');
  });
}

let server;

// The CLI against the server, with `input` on stdin; its stdout.
function cli(args, input = '') {
  return run(bin, [...args, '--server', `http://${server.grpc}`, '--token-file', tokenFile], input);
}

function run(program, args, input = '', env = process.env) {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000, env });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => { out += chunk; });
    child.stderr.on('data', (chunk) => { err += chunk; });
    child.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`${program} ${args[0]}: ${err}`))));
    // A command that does not read stdin may exit before the write lands;
    // its exit status, not the pipe, says whether it worked.
    child.stdin.on('error', (error) => { if (error.code !== 'EPIPE') reject(error); });
    child.stdin.end(input);
  });
}

const lines = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => `entry ${from + i}`).join('\n') + '\n';
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

// What the page shows: every rendered row's seq and message, in order.
async function rows(page) {
  return page.$$eval('#entries .row', (nodes) => nodes.map((row) => ({
    seq: Number(row.dataset.seq),
    level: row.querySelector('.lvl').textContent,
    message: row.querySelector('.msg').textContent,
  })));
}

async function waitForLastSeq(page, seq) {
  await page.waitForFunction((want) => {
    const all = document.querySelectorAll('#entries .row');
    return all.length > 0 && Number(all[all.length - 1].dataset.seq) >= want;
  }, seq, { timeout: WAIT });
}

// Rows 1..last, each once, in order, with the messages appended; and the
// page counted no duplicate it had to drop.
async function assertEntries(page, last) {
  const shown = await rows(page);
  const seqs = shown.map((row) => row.seq);
  assert.deepEqual(seqs, range(1, last), 'every entry once, in seq order');
  shown.forEach((row) => assert.equal(row.message, `entry ${row.seq}`));
  assert.equal(await page.$eval('#entries', (node) => node.dataset.duplicates), '0');
}

// The computed style of the node `selector` finds, as [color, background-color, font-weight].
async function look(page, selector) {
  return page.$eval(selector, (node) => {
    const style = getComputedStyle(node);
    return [style.color, style.backgroundColor, style.fontWeight];
  });
}

// Whether the node `selector` finds is inside the visible part of #log.
async function inSight(page, selector) {
  return page.$eval(selector, (node) => {
    const row = node.getBoundingClientRect();
    const log = document.getElementById('log').getBoundingClientRect();
    return row.top >= log.top && row.bottom <= log.bottom;
  });
}

// Clicks `selector`, which must start a download; the file's text.
async function downloaded(page, selector) {
  const [file] = await Promise.all([page.waitForEvent('download', { timeout: WAIT }), page.click(selector)]);
  return readFileSync(await file.path(), 'utf8');
}

async function waitForBanner(page, kind) {
  await page.waitForSelector(`#banner[data-kind="${kind}"]`, { state: 'visible', timeout: WAIT });
  return page.$eval('#banner', (node) => node.textContent);
}

const results = [];
async function step(name, body) {
  const began = Date.now();
  await body();
  results.push(name);
  console.log(`ok ${results.length} - ${name} (${Date.now() - began} ms)`);
}

let browser;
let page;
try {
  server = await startServer();
  console.log(`server: grpc ${server.grpc}, http ${server.http}`);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // playwright-core gives each launch a fresh temporary profile.
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30_000,
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
  page.setDefaultTimeout(WAIT);
  const pageErrors = [];
  page.on('pageerror', (error) => pageErrors.push(error.message));
  const console_ = `http://${server.http}`;
  let parent;
  let child;

  await step('the console asks for the token once, then lists sessions live as a tree', async () => {
    parent = await cli(['start', '--app', 'builder', '--job', 'ci-42']);
    await page.goto(`${console_}/#/`);
    await page.waitForSelector('#auth', { state: 'visible' });
    await page.fill('#token', TOKEN);
    await page.click('#auth button[type=submit]');
    await page.waitForSelector(`#sessions tr[data-id="${parent}"]`);
    child = await cli(['start', '--app', 'builder', '--job', 'ci-42', '--parent', parent]);
    const other = await cli(['start', '--app', 'docs', '--job', 'ci-43']);
    await page.waitForSelector(`#sessions tr[data-id="${child}"]`);
    await page.waitForSelector(`#sessions tr[data-id="${other}"]`);
    const order = await page.$$eval('#sessions tbody tr', (trs) => trs.map((tr) => tr.dataset.id));
    assert.equal(order[order.indexOf(parent) + 1], child, 'the child sits right under its parent');
    assert.match(await page.$eval(`tr[data-id="${child}"] td.id`, (td) => td.textContent), /^└ /);
    await page.fill('#f-app', 'builder');
    await page.waitForSelector(`#sessions tr[data-id="${other}"]`, { state: 'detached' });
    await page.screenshot({ path: path.join(artifacts, 'sessions.png') });
    await page.fill('#f-app', '');
  });

  await step('a session view shows appended entries live, in order, with level colours', async () => {
    await page.click(`#sessions tr[data-id="${parent}"]`);
    await page.waitForSelector('#status:text("live")');
    await cli(['append', parent, '--logger', 'build'], lines(1, 10));
    await cli(['append', parent, '--logger', 'test', '--level', 'warn'], lines(11, 15));
    await cli(['append', parent, '--logger', 'test', '--level', 'error'], lines(16, 20));
    await waitForLastSeq(page, 20);
    await assertEntries(page, 20);
    assert.equal(await page.locator('#entries .lvl-warn').count(), 5);
    assert.equal(await page.locator('#entries .lvl-error').count(), 5);
    const colour = await page.$eval('#entries .lvl-error', (node) => getComputedStyle(node).color);
    assert.equal(colour, 'rgb(198, 40, 40)', 'errors are red');
    await page.screenshot({ path: path.join(artifacts, 'session-live.png') });
  });

  await step('a reload mid-stream shows every entry once (no gap, no duplicate)', async () => {
    const appending = (async () => {
      for (let from = 21; from <= 60; from += 5) await cli(['append', parent], lines(from, from + 4));
    })();
    await waitForLastSeq(page, 25);
    await page.reload();
    await appending;
    await waitForLastSeq(page, 60);
    await assertEntries(page, 60);
    assert.equal(await page.locator('#auth').isVisible(), false, 'the token is asked for once per tab');
  });

  await step('a dropped connection shows a banner and resumes from its cursor', async () => {
    await stopServer(server);
    assert.match(await waitForBanner(page, 'reconnecting'), /Connection lost at seq 60/);
    server = await startServer(server.grpc, server.http);
    await cli(['append', parent], lines(61, 70));
    assert.match(await waitForBanner(page, 'reconnected'), /resumed after seq (60|70)/);
    await waitForLastSeq(page, 70);
    await assertEntries(page, 70);
  });

  await step('pause keeps the cursor; resume continues from it', async () => {
    await page.click('#pause');
    assert.match(await waitForBanner(page, 'paused'), /Paused at seq 70/);
    await cli(['append', parent], lines(71, 75));
    // Stored (seen through the API), but not shown while paused.
    const stored = await page.evaluate(async ([id, token]) => {
      const answer = await fetch('/api/v1/sessions/' + id, { headers: { Authorization: 'Bearer ' + token } });
      return (await answer.json()).last_seq;
    }, [parent, TOKEN]);
    assert.equal(stored, 75);
    await page.waitForTimeout(300); // a negative check: nothing may arrive meanwhile
    assert.equal((await rows(page)).at(-1).seq, 70);
    await page.click('#pause');
    await waitForLastSeq(page, 75);
    await assertEntries(page, 75);
  });

  await step('level and text filters show only matching entries', async () => {
    await page.selectOption('#f-level', 'warn');
    await page.waitForFunction(() => document.querySelectorAll('#entries .row').length === 10);
    assert.deepEqual((await rows(page)).map((row) => row.seq), range(11, 20));
    await page.selectOption('#f-level', '');
    await page.fill('#f-logger', 'test');
    await page.waitForFunction(() => document.querySelectorAll('#entries .row').length === 10);
    assert.deepEqual((await rows(page)).map((row) => row.seq), range(11, 20));
    await page.fill('#f-logger', '');
    await waitForLastSeq(page, 75);
    await page.fill('#f-text', 'entry 7');
    await page.waitForFunction(() => document.querySelectorAll('#entries .row').length === 7);
    assert.deepEqual((await rows(page)).map((row) => row.seq), [7, 70, 71, 72, 73, 74, 75]);
    await page.fill('#f-text', 'ENTRY 7');
    await page.waitForFunction(() => document.querySelectorAll('#entries .row').length === 0);
    await page.check('#f-icase');
    await page.waitForFunction(() => document.querySelectorAll('#entries .row').length === 7);
    await page.uncheck('#f-icase');
    await page.check('#f-regex');
    await page.fill('#f-text', '^entry 7[0-2]$');
    await page.waitForFunction(() => document.querySelectorAll('#entries .row').length === 3);
    assert.deepEqual((await rows(page)).map((row) => row.seq), [70, 71, 72]);
    await page.fill('#f-text', 'entry (7');
    assert.match(await waitForBanner(page, 'failed'), /regular expression|regex/);
    await page.uncheck('#f-regex');
    await page.fill('#f-text', '');
    await waitForLastSeq(page, 75);
    await page.waitForFunction(() => document.querySelectorAll('#entries .row').length === 75);
    await assertEntries(page, 75);
  });

  await step('jump to end scrolls to the newest entry', async () => {
    await page.$eval('#log', (log) => { log.scrollTop = 0; });
    await page.click('#jump');
    const atEnd = await page.$eval('#log', (log) => log.scrollTop + log.clientHeight >= log.scrollHeight - 8);
    assert.ok(atEnd);
  });

  await step('ending the session shows the end entry and a banner', async () => {
    await cli(['end', parent, '--reason', 'exit code 0']);
    assert.match(await waitForBanner(page, 'ended'), /Session ended: exit code 0/);
    const last = (await rows(page)).at(-1);
    assert.deepEqual(last, { seq: 76, level: 'INFO', message: 'Session ended: exit code 0' });
    const newestInSight = await page.$eval('#log', (log) => log.scrollTop + log.clientHeight >= log.scrollHeight - 8);
    assert.ok(newestInSight, 'the view stays at the newest entry when the banner appears');
    await page.screenshot({ path: path.join(artifacts, 'console.png') });
  });

  await step('the list shows a session ending live', async () => {
    await page.goto(`${console_}/#/`);
    await page.waitForSelector(`#sessions tr[data-id="${parent}"][data-state="ended"]`);
    await page.waitForSelector(`#sessions tr[data-id="${child}"][data-state="active"]`);
    await cli(['end', child, '--reason', 'done']);
    await page.waitForSelector(`#sessions tr[data-id="${child}"][data-state="ended"]`);
  });

  await step('fields and trace ids expand under a toggle', async () => {
    const out = await run(fieldsBin, [`http://${server.grpc}`], '', { ...process.env, SESSIONLOG_TOKEN_FILE: tokenFile });
    const traced = out.match(/^session (\S+)$/m)[1];
    await page.goto(`${console_}/#/sessions/${encodeURIComponent(traced)}`);
    const warn = page.locator('#entries .row.level-warn');
    await warn.waitFor();
    assert.equal(await warn.locator('.fields').count(), 0, 'fields start folded');
    await warn.locator('.toggle').click();
    const details = JSON.parse(await warn.locator('.fields').textContent());
    assert.equal(details.fields.warnings, 2);
    assert.equal(details.fields.target_name, 'release');
    assert.equal(details.trace_id, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(details.span_id, '00f067aa0ba902b7');
    await page.screenshot({ path: path.join(artifacts, 'fields.png') });
    await warn.locator('.toggle').click();
    assert.equal(await warn.locator('.fields').count(), 0, 'and fold again');
  });

  let coloured;
  await step('SGR colours show as styled text, other escapes are dropped, the toggle strips them', async () => {
    coloured = await cli(['start', '--app', 'painter', '--job', 'ci-50']);
    await cli(['append', coloured], [
      '\x1b[31mred alert\x1b[0m plain \x1b[1;38;5;208mbold orange\x1b[0m \x1b[48;2;0;0;255mon blue\x1b[0m'
        + '\x1b]0;a title\x07\x1b[2K done <img src=x>',
      '\x1b[92mbright green\x1b[39m and \x1b[4:3mnot a colour\x1b[m',
    ].join('\n') + '\n');
    await page.goto(`${console_}/#/sessions/${coloured}`);
    await waitForLastSeq(page, 2);
    const [first, second] = await rows(page);
    assert.equal(first.message, 'red alert plain bold orange on blue done <img src=x>', 'escapes gone, markup as text');
    assert.equal(second.message, 'bright green and not a colour');
    assert.equal(await page.locator('#entries img').count(), 0, 'a message never becomes markup');
    const red = '#entries .row[data-seq="1"] .msg .ansi-fg-1';
    assert.equal(await page.textContent(red), 'red alert');
    assert.equal((await look(page, red))[0], 'rgb(198, 40, 40)', 'red text is red');
    const orange = await page.$eval('#entries .row[data-seq="1"] .msg .ansi-bold', (node) => node.textContent);
    assert.equal(orange, 'bold orange');
    assert.deepEqual((await look(page, '#entries .row[data-seq="1"] .msg .ansi-bold')).filter((_, i) => i !== 1),
      ['rgb(255, 135, 0)', '700'], '256-colour 208 is orange, and bold');
    assert.equal((await look(page, '#entries .row[data-seq="2"] .msg .ansi-fg-10'))[0], 'rgb(67, 160, 71)');
    const blue = await page.$$eval('#entries .row[data-seq="1"] .msg span', (spans) => spans
      .filter((span) => getComputedStyle(span).backgroundColor === 'rgb(0, 0, 255)').map((span) => span.textContent));
    assert.deepEqual(blue, ['on blue'], 'a truecolor background');
    await page.screenshot({ path: path.join(artifacts, 'colours.png') });
    // The parser itself, on the forms a line above does not use: each piece
    // as [text, classes, inline colour, inline background].
    const pieces = await page.evaluate((messages) => messages.map((message) => messageNodes(message).map((node) => [
      node.textContent, node.className || '', (node.style && node.style.color) || '', (node.style && node.style.backgroundColor) || '',
    ])), [
      '\x1b[38:2::10:20:30mcolon rgb\x1b[39m\x1b[48:5:196mcolon 256\x1b[0m',
      '\x1b[1;31mbold red\x1b[22m red\x1b[7m reversed\x1b[27;49m end',
      '\x1b[7minverse default\x1b[0m \x1b[38;5;300mout of range\x1b[m \x1b[38;5;244mgrey',
      'cut \x1b[31', 'lone \x1b', '\x1b[?25lhidden cursor\x1b[?25h \x9b31mC1 CSI', '\x1b(Bcharset \x1b7saved',
    ]);
    assert.deepEqual(pieces, [
      [['colon rgb', 'ansi', 'rgb(10, 20, 30)', ''], ['colon 256', 'ansi', '', 'rgb(255, 0, 0)']],
      [['bold red', 'ansi ansi-fg-1 ansi-bold', '', ''], [' red', 'ansi ansi-fg-1', '', ''],
        [' reversed', 'ansi ansi-fg-bg ansi-bg-1', '', ''], [' end', 'ansi ansi-fg-1', '', '']],
      [['inverse default', 'ansi ansi-fg-bg ansi-bg-fg', '', ''], [' ', '', '', ''], ['out of range', '', '', ''],
        [' ', '', '', ''], ['grey', 'ansi', 'rgb(128, 128, 128)', '']],
      [['cut ', '', '', '']], [['lone ', '', '', '']], [['hidden cursor', '', '', ''], [' ', '', '', ''],
        ['C1 CSI', 'ansi ansi-fg-1', '', '']], [['charset ', '', '', ''], ['saved', '', '', '']],
    ]);

    await page.click('#colours');
    const plain = (await look(page, '#entries .row[data-seq="1"] .msg'))[0];
    assert.equal((await look(page, red))[0], plain, 'without colours the red text looks like the rest');
    assert.deepEqual((await look(page, '#entries .row[data-seq="1"] .msg .ansi-bold')).slice(0, 1), [plain]);
    await page.reload();
    await waitForLastSeq(page, 2);
    assert.equal(await page.isChecked('#colours'), false, 'the choice is kept');
    assert.equal((await look(page, red))[0], plain);
    await page.click('#colours');
    assert.equal((await look(page, red))[0], 'rgb(198, 40, 40)');
  });

  let needle;
  let needleCaps;
  await step('a search finds entries across sessions, grouped by session, from a shareable URL', async () => {
    needle = await cli(['start', '--app', 'finder', '--job', 'ci-60']);
    await cli(['append', needle], lines(1, 24) + 'found the needle here\n' + lines(26, 30));
    needleCaps = await cli(['start', '--app', 'finder', '--job', 'ci-61']);
    await cli(['append', needleCaps], 'a NEEDLE in capitals\n' + lines(2, 3));
    await page.goto(`${console_}/#/search`);
    await page.fill('#s-text', 'needle');
    await page.check('#s-icase');
    await page.click('#search-form button[type=submit]');
    const groups = async () => page.evaluate(() => [...document.querySelectorAll('#search-results .hit-group')]
      .map((node) => ({ id: node.dataset.session, seqs: [...node.querySelectorAll('.hit')].map((hit) => Number(hit.dataset.seq)) })));
    // The old results stay until the new search's answer replaces them, so a count of groups can
    // match the old ones: wait for these very groups (ids and hit seqs), then assert for a readable failure.
    const showsGroups = async (want, message) => {
      const key = want.map((group) => `${group.id}:${group.seqs.join(',')}`).join(' ');
      await page.waitForFunction((key) => [...document.querySelectorAll('#search-results .hit-group')]
        .map((node) => `${node.dataset.session}:${[...node.querySelectorAll('.hit')].map((hit) => hit.dataset.seq).join(',')}`)
        .join(' ') === key, key).catch(() => {});
      assert.deepEqual(await groups(), want, message);
    };
    await showsGroups([{ id: needleCaps, seqs: [1] }, { id: needle, seqs: [25] }], 'newest session first');
    assert.equal(new URL(page.url()).hash, '#/search?contains=needle&ignore_case=true');
    const about = `#search-results .hit-group[data-session="${needle}"] .about`;
    await page.waitForFunction((selector) => /finder.*ci-60.*active/.test(document.querySelector(selector).textContent), about);
    assert.match(await page.textContent('#search-summary'), /^2 hits in 2 sessions \(scanned \d+ sessions, \d+ entries, [\d.]+ (bytes|kB|MB)\)$/);
    await page.screenshot({ path: path.join(artifacts, 'search.png') });

    await page.reload();
    await showsGroups([{ id: needleCaps, seqs: [1] }, { id: needle, seqs: [25] }], 'the URL is the search');
    assert.equal(await page.inputValue('#s-text'), 'needle');
    assert.equal(await page.isChecked('#s-icase'), true);

    // A filter, a regex, an invalid regex, and ANSI-stripped matching shown in colour.
    await page.fill('#s-job', 'ci-61');
    await page.click('#search-form button[type=submit]');
    await showsGroups([{ id: needleCaps, seqs: [1] }], 'only the job asked for');
    await page.fill('#s-job', '');
    await page.uncheck('#s-icase');
    await page.check('#s-regex');
    await page.fill('#s-text', 'ne+dle \\w+');
    await page.click('#search-form button[type=submit]');
    await showsGroups([{ id: needle, seqs: [25] }], 'only the regex match, case-sensitive');
    await page.fill('#s-text', '(unclosed');
    await page.click('#search-form button[type=submit]');
    await page.waitForSelector('#search-error', { state: 'visible' });
    assert.match(await page.textContent('#search-error'), /^INVALID_ARGUMENT: .*(regex|regular expression)/i);
    assert.equal(await page.locator('#search-results .hit-group').count(), 0);
    await page.goto(`${console_}/#/search?contains=alert+plain`);
    await page.waitForSelector(`#search-results .hit-group[data-session="${coloured}"] .hit[data-seq="1"]`);
    assert.equal((await look(page, '#search-results .hit .msg .ansi-fg-1'))[0], 'rgb(198, 40, 40)');
  });

  await step('a hit opens its session at that entry, highlighted, then live', async () => {
    await page.goto(`${console_}/#/search?contains=needle&ignore_case=true`);
    await page.click(`#search-results .hit-group[data-session="${needle}"] .hit[data-seq="25"]`);
    await page.waitForSelector('#entries .row.target[data-seq="25"]');
    assert.equal(new URL(page.url()).hash, `#/sessions/${needle}?seq=25`);
    assert.ok(await inSight(page, '#entries .row.target'), 'the entry is scrolled into sight');
    assert.equal(await page.locator('#entries .row.target').count(), 1);
    await page.screenshot({ path: path.join(artifacts, 'session-at-seq.png') });
    await page.waitForSelector('#status:text("live")');
    await cli(['append', needle], lines(31, 31));
    await waitForLastSeq(page, 31);
    assert.deepEqual((await rows(page)).map((row) => row.seq), range(1, 31), 'the page around 25, then live');
  });

  await step('Download links the export; it saves the whole session as text or ndjson', async () => {
    assert.equal(await page.getAttribute('#download', 'href'), `/api/v1/sessions/${needle}/export?format=text`);
    assert.equal(await page.getAttribute('#download-ndjson', 'href'), `/api/v1/sessions/${needle}/export?format=ndjson`);
    const text = (await downloaded(page, '#download')).trimEnd().split('\n');
    assert.equal(text.length, 31);
    assert.match(text[24], / stdin: found the needle here$/);
    const ndjson = (await downloaded(page, '#download-ndjson')).trimEnd().split('\n').map((line) => JSON.parse(line));
    assert.deepEqual(ndjson.map((entry) => entry.seq), range(1, 31));
    assert.equal(ndjson[24].message, 'found the needle here');
  });

  let large;
  await step('a large session keeps the last 5,000 rows in the page', async () => {
    large = await cli(['start', '--app', 'large']);
    await page.goto(`${console_}/#/sessions/${large}`);
    await page.waitForSelector('#status:text("live")');
    await cli(['append', large], lines(1, 6000));
    await waitForLastSeq(page, 6000);
    const shown = await rows(page);
    assert.equal(shown.length, 5000);
    assert.deepEqual([shown[0].seq, shown.at(-1).seq], [1001, 6000]);
    assert.match(await page.textContent('#trimmed'), /^1000 older entries are not shown/);
    assert.equal(await page.$eval('#entries', (node) => node.dataset.duplicates), '0');
  });

  await step('a session opened at a seq pages around it; Jump to end goes live', async () => {
    await page.goto(`${console_}/#/sessions/${large}?seq=3000`);
    await page.waitForSelector('#entries .row.target[data-seq="3000"]');
    let shown = await rows(page);
    assert.deepEqual([shown.length, shown[0].seq, shown.at(-1).seq], [300, 2900, 3199]);
    assert.ok(await inSight(page, '#entries .row.target'));
    assert.equal(await page.isDisabled('#pause'), true, 'nothing live to pause yet');
    const top = () => page.$eval('#entries .row[data-seq="2900"]', (row) => Math.round(row.getBoundingClientRect().top));
    await page.$eval('#log', (log) => { log.scrollTop = 0; });
    const before = await top();
    await page.click('#older');
    await page.waitForFunction(() => document.querySelector('#entries .row').dataset.seq === '2600');
    assert.equal(await top(), before, 'loading older entries keeps the rows shown where they were');
    await page.click('#newer');
    await waitForLastSeq(page, 3499);
    shown = await rows(page);
    assert.deepEqual(shown.map((row) => row.seq), range(2600, 3499));
    await page.click('#jump');
    await page.waitForSelector('#status:text("live")');
    assert.equal(new URL(page.url()).hash, `#/sessions/${large}`);
    shown = await rows(page);
    assert.deepEqual([shown[0].seq, shown.at(-1).seq], [5001, 6000]);
    assert.deepEqual(pageErrors, [], 'no script errors on the page');
  });

  await stopServer(server);
  server = null;
  console.log(`${results.length} passed, 0 failed`);
} catch (error) {
  console.error(`not ok ${results.length + 1}: ${error.stack || error}`);
  if (page) await page.screenshot({ path: path.join(artifacts, 'failure.png') }).catch(() => {});
  console.error('server log (last 30 lines):\n' + serverLog.slice(-30).join('\n'));
  console.log(`${results.length} passed, 1 failed`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  if (server) server.child.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
}
