// The sessionlog web console: plain JavaScript, no build step, no
// dependencies. Three views, chosen by the URL hash: the sessions list
// (#/), kept live by the watch stream; one session (#/sessions/ID),
// followed live over SSE, or opened around one entry
// (#/sessions/ID?seq=N); and search across sessions (#/search?QUERY, the
// query being the search API's own). Every value from the server goes
// into the page as text (textContent), never as markup; colours in
// messages become styled spans built with DOM calls.
'use strict';

const TAIL = 1000; // a session view starts with the last TAIL entries
const AROUND_BEFORE = 100; // a view opened at a seq starts this many entries before it
const PAGE = 300; // entries per page when paging around a seq
const MAX_ROWS = 5000; // older rows leave the DOM so large sessions stay smooth
const MAX_LIST = 500; // the most sessions the list renders

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
};

// ---- tokens: asked for once, on the first 401, kept in this tab ----

const TOKEN_KEY = 'sessionlog.token';
let waitingForToken = null;

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

function askForToken(message) {
  if (!waitingForToken) {
    waitingForToken = new Promise((resolve) => {
      const form = $('auth');
      $('auth-error').textContent = message || '';
      form.hidden = false;
      $('token').focus();
      form.onsubmit = (event) => {
        event.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
        form.hidden = true;
        waitingForToken = null;
        resolve();
      };
    });
  }
  return waitingForToken;
}

// GET an API path as JSON; asks for a token and retries on 401.
async function api(path) {
  for (;;) {
    const headers = token() ? { Authorization: 'Bearer ' + token() } : {};
    const response = await fetch(path, { headers, cache: 'no-store' });
    if (response.status === 401) {
      await askForToken(token() ? 'That token was refused.' : '');
      continue;
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error((body.error && body.error.message) || response.statusText);
      error.status = response.status;
      error.code = (body.error && body.error.code) || '';
      throw error;
    }
    return body;
  }
}

// An SSE URL; EventSource cannot send headers, so the token rides along.
function streamUrl(path, params) {
  if (token()) params.set('access_token', token());
  const query = params.toString();
  return query ? path + '?' + query : path;
}

function setLive(state) {
  const live = $('live');
  live.className = 'live ' + (state || '');
  live.title = { on: 'live', retrying: 'reconnecting', '': 'not connected' }[state || ''];
}

function shortTime(iso) {
  return iso ? iso.slice(11, 23) : '';
}

// ---- colours: SGR sequences in a message become styled spans ----
//
// Programs run under `sessionlog run` log terminal colours. SGR sequences
// (ESC [ ... m) set the style of the text after them; every other escape
// sequence (cursor moves, erases, titles, ...) is dropped from the display.
// The text goes in as text nodes; a style is a class (the 16 named colours,
// bold, ...) or a CSSOM colour (256-colour and truecolor), never markup.

const COLOURS_KEY = 'sessionlog.colours';
// CSI (ESC [ or U+009B) with its parameters; OSC, DCS, SOS, PM and APC
// strings up to BEL or ST (or the end); any other ESC with its final byte.
const ESCAPE = /(?:\x1b\[|\x9b)([0-?]*)([ -/]*)([@-~]|$)|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -/]*[0-~]?/g;
const CUBE = [0, 95, 135, 175, 215, 255];

function plainStyle() {
  return { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false };
}

// One of the 256 colours: 0-15 stay palette indexes (the stylesheet's), the
// rest become rgb() strings.
function colour256(n) {
  if (!Number.isInteger(n) || n < 0 || n > 255) return null;
  if (n < 16) return n;
  if (n >= 232) {
    const grey = 8 + (n - 232) * 10;
    return `rgb(${grey}, ${grey}, ${grey})`;
  }
  const i = n - 16;
  return `rgb(${CUBE[Math.floor(i / 36)]}, ${CUBE[Math.floor(i / 6) % 6]}, ${CUBE[i % 6]})`;
}

// The colour after a 38 or 48: `5;n` or `2;r;g;b` (the semicolon form, which
// consumes the following parameters) or `5:n`, `2:r:g:b`, `2:cs:r:g:b` (the
// colon form). Returns the colour (null: leave as is) and the parameters used.
function extendedColour(args, colon) {
  const byte = (text) => {
    const n = Number(text === '' ? 0 : text);
    return Number.isInteger(n) && n >= 0 && n <= 255 ? n : null;
  };
  if (args[0] === '5') return { colour: colour256(Number(args[1])), used: 2 };
  if (args[0] === '2') {
    const rgb = colon && args.length >= 5 ? args.slice(2, 5) : args.slice(1, 4);
    const [r, g, b] = rgb.map(byte);
    const valid = rgb.length === 3 && r !== null && g !== null && b !== null;
    return { colour: valid ? `rgb(${r}, ${g}, ${b})` : null, used: 4 };
  }
  return { colour: null, used: 1 };
}

function applySgr(style, parameters) {
  const codes = parameters === '' ? ['0'] : parameters.split(';');
  for (let i = 0; i < codes.length; i += 1) {
    const [head, ...sub] = codes[i].split(':');
    const code = head === '' ? 0 : Number(head);
    if (code === 0) Object.assign(style, plainStyle());
    else if (code === 1) style.bold = true;
    else if (code === 2) style.dim = true;
    else if (code === 3) style.italic = true;
    else if (code === 4) style.underline = true;
    else if (code === 7) style.inverse = true;
    else if (code === 22) style.bold = style.dim = false;
    else if (code === 23) style.italic = false;
    else if (code === 24) style.underline = false;
    else if (code === 27) style.inverse = false;
    else if (code >= 30 && code <= 37) style.fg = code - 30;
    else if (code === 39) style.fg = null;
    else if (code >= 40 && code <= 47) style.bg = code - 40;
    else if (code === 49) style.bg = null;
    else if (code >= 90 && code <= 97) style.fg = code - 90 + 8;
    else if (code >= 100 && code <= 107) style.bg = code - 100 + 8;
    else if (code === 38 || code === 48) {
      const colon = sub.length > 0;
      const { colour, used } = extendedColour(colon ? sub : codes.slice(i + 1), colon);
      if (!colon) i += used;
      if (colour !== null) style[code === 38 ? 'fg' : 'bg'] = colour;
    }
  }
}

// A span for `text` in `style`, or a bare text node when it has none.
function styled(text, style) {
  let { fg, bg } = style;
  if (style.inverse) [fg, bg] = [bg === null ? 'bg' : bg, fg === null ? 'fg' : fg];
  const classes = [];
  if (typeof fg === 'number' || fg === 'bg') classes.push('ansi-fg-' + fg);
  if (typeof bg === 'number' || bg === 'fg') classes.push('ansi-bg-' + bg);
  for (const flag of ['bold', 'dim', 'italic', 'underline']) if (style[flag]) classes.push('ansi-' + flag);
  const rgbFg = typeof fg === 'string' && fg.startsWith('rgb') ? fg : '';
  const rgbBg = typeof bg === 'string' && bg.startsWith('rgb') ? bg : '';
  if (!classes.length && !rgbFg && !rgbBg) return document.createTextNode(text);
  const span = el('span', ['ansi', ...classes].join(' '), text);
  if (rgbFg) span.style.color = rgbFg;
  if (rgbBg) span.style.backgroundColor = rgbBg;
  return span;
}

// The nodes that show `message`: its text with escape sequences removed,
// split into spans where SGR sequences change the style.
function messageNodes(message) {
  const nodes = [];
  const style = plainStyle();
  let from = 0;
  for (const match of message.matchAll(ESCAPE)) {
    if (match.index > from) nodes.push(styled(message.slice(from, match.index), style));
    from = match.index + match[0].length;
    if (match[3] === 'm' && match[2] === '' && /^[0-9;:]*$/.test(match[1])) applySgr(style, match[1]);
  }
  if (from < message.length) nodes.push(styled(message.slice(from), style));
  return nodes;
}

// The header's colours toggle: off strips every message's styling (the
// stylesheet overrides the spans), kept in localStorage across visits.
function showColours(on) {
  document.body.classList.toggle('plain', !on);
  $('colours').checked = on;
}

function toggleColours() {
  const on = $('colours').checked;
  localStorage.setItem(COLOURS_KEY, on ? 'on' : 'off');
  showColours(on);
}

// ---- the sessions list ----

const list = { sessions: new Map(), stream: null };

function openList() {
  $('list-view').hidden = false;
  $('crumb').textContent = 'sessions';
  watchSessions();
}

async function watchSessions() {
  try {
    await api('/api/v1/sessions?page_size=1'); // asks for a token first when needed
  } catch (error) {
    $('list-count').textContent = error.message;
  }
  list.sessions.clear();
  const source = new EventSource(streamUrl('/api/v1/watch', new URLSearchParams({ include_existing: 'true' })));
  list.stream = source;
  const upsert = (event) => {
    const { session } = JSON.parse(event.data);
    list.sessions.set(session.id, session);
    renderListSoon();
  };
  for (const kind of ['started', 'updated', 'ended']) source.addEventListener(kind, upsert);
  source.addEventListener('deleted', (event) => {
    list.sessions.delete(JSON.parse(event.data).session.id);
    renderListSoon();
  });
  source.addEventListener('caught_up', () => {
    setLive('on');
    renderListSoon();
  });
  source.addEventListener('stream_error', () => {
    // The stream resumes by itself; a watch restarts from a fresh snapshot.
    list.sessions.clear();
  });
  source.onopen = () => list.sessions.clear();
  source.onerror = () => setLive(source.readyState === EventSource.CLOSED ? '' : 'retrying');
}

let listPending = false;
function renderListSoon() {
  if (listPending) return;
  listPending = true;
  requestAnimationFrame(() => {
    listPending = false;
    renderList();
  });
}

// Children under their parents (when the parent is shown), newest first.
function renderList() {
  const state = $('f-state').value;
  const app = $('f-app').value.trim();
  const job = $('f-job').value.trim();
  const shown = [...list.sessions.values()].filter(
    (s) => (!state || s.state === state) && (!app || s.app_name.includes(app)) && (!job || s.job_id.includes(job)),
  );
  const ids = new Set(shown.map((s) => s.id));
  const children = new Map();
  const roots = [];
  for (const session of shown) {
    if (session.parent_session_id && ids.has(session.parent_session_id)) {
      if (!children.has(session.parent_session_id)) children.set(session.parent_session_id, []);
      children.get(session.parent_session_id).push(session);
    } else {
      roots.push(session);
    }
  }
  const newestFirst = (a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
  roots.sort(newestFirst);
  const rows = [];
  const visit = (session, depth) => {
    if (rows.length >= MAX_LIST) return;
    rows.push(sessionRow(session, depth));
    for (const child of (children.get(session.id) || []).sort(newestFirst).reverse()) visit(child, depth + 1);
  };
  roots.forEach((session) => visit(session, 0));
  $('sessions').tBodies[0].replaceChildren(...rows);
  $('list-empty').hidden = rows.length > 0;
  $('list-count').textContent =
    shown.length > MAX_LIST ? `showing ${MAX_LIST} of ${shown.length}` : `${shown.length} sessions`;
}

function sessionRow(session, depth) {
  const row = el('tr');
  row.dataset.id = session.id;
  row.dataset.state = session.state;
  const id = el('td', 'id');
  if (depth > 0) {
    id.style.paddingLeft = 8 + depth * 18 + 'px';
    id.append(el('span', 'child-mark', '└ '));
  }
  id.append(document.createTextNode(session.id));
  const state = el('td');
  state.append(el('span', 'state state-' + session.state, session.state));
  row.append(
    id, el('td', '', session.app_name), el('td', '', session.job_id), state,
    // Appends send no watch events: only an ended session's count is final.
    el('td', 'num', session.state === 'ended' ? session.last_seq : ''), el('td', '', shortTime(session.created_at)),
    el('td', '', session.end_reason || shortTime(session.ended_at)),
  );
  row.onclick = () => { location.hash = '#/sessions/' + encodeURIComponent(session.id); };
  return row;
}

// ---- one session, followed live ----

// `around`: the seq the view was opened at (0: none, the view starts with
// the last TAIL entries and follows); `firstSeq`: the view holds entries
// after it only (older ones can be loaded); `generation` tells a page
// that arrives after the view moved on to drop itself.
const view = {
  id: '', source: null, cursor: null, lastSeq: 0, rows: 0, trimmed: 0, duplicates: 0,
  paused: false, ended: false, follow: true, dropped: false, around: 0, firstSeq: 0, generation: 0,
};

async function openSession(id, around) {
  Object.assign(view, {
    id, source: null, cursor: null, lastSeq: 0, rows: 0, trimmed: 0, duplicates: 0,
    paused: false, ended: false, follow: !around, dropped: false, around, firstSeq: 0,
    generation: view.generation + 1,
  });
  $('session-view').hidden = false;
  $('crumb').textContent = id;
  $('pause').textContent = 'Pause';
  showDownloads(id);
  clearEntries();
  banner('');
  const generation = view.generation;
  let session;
  try {
    session = await api(sessionPath(id));
  } catch (error) {
    banner('failed', error.status === 404 ? `Session ${id} does not exist.` : error.message);
    return;
  }
  if (generation !== view.generation) return;
  showMeta(session);
  start();
}

function sessionPath(id) {
  return '/api/v1/sessions/' + encodeURIComponent(id);
}

// Live from the last TAIL entries, or a page around the seq asked for.
async function start() {
  if (!(await filtersValid())) return;
  if (view.around) openAround();
  else follow();
}

function showMeta(session) {
  const meta = $('session-meta');
  meta.replaceChildren();
  const part = (label, value) => {
    if (value === '' || value === null || value === undefined) return;
    meta.append(el('span', '', label + ' '), el('b', '', value), document.createTextNode('   '));
  };
  part('app', session.app_name);
  part('job', session.job_id);
  part('state', session.state);
  part('parent', session.parent_session_id);
  part('created', session.created_at);
  part('ended', session.ended_at && `${session.ended_at} (${session.end_reason || 'no reason'})`);
}

function clearEntries() {
  $('entries').replaceChildren();
  $('entries').dataset.duplicates = '0';
  $('trimmed').hidden = true;
  $('older').hidden = true;
  $('newer').hidden = true;
  view.rows = 0;
  view.trimmed = 0;
  view.lastSeq = 0;
  view.firstSeq = 0;
}

function filterParams() {
  const params = new URLSearchParams();
  if ($('f-level').value) params.set('level', $('f-level').value);
  if ($('f-logger').value.trim()) params.set('logger', $('f-logger').value.trim());
  if ($('f-text').value) params.set($('f-regex').checked ? 'regex' : 'contains', $('f-text').value);
  if ($('f-icase').checked) params.set('ignore_case', 'true');
  return params;
}

// Opens the follow stream: from the kept cursor after a pause, else the
// last TAIL entries. After a dropped connection EventSource reconnects by
// itself and sends the last batch id as Last-Event-ID: the server resumes
// right after it, so nothing is missed or repeated.
function follow() {
  $('pause').disabled = false;
  $('newer').hidden = true;
  const params = filterParams();
  if (view.cursor !== null) params.set('after', view.cursor);
  else params.set('tail', TAIL);
  const source = new EventSource(streamUrl('/api/v1/sessions/' + encodeURIComponent(view.id) + '/follow', params));
  view.source = source;
  $('status').textContent = 'loading…';
  source.onmessage = (event) => {
    const batch = JSON.parse(event.data);
    addEntries(batch.entries);
    view.cursor = batch.cursor;
  };
  source.addEventListener('caught_up', (event) => {
    view.cursor = JSON.parse(event.data).cursor;
    $('status').textContent = 'live';
    setLive('on');
    if (view.dropped) {
      view.dropped = false;
      banner('reconnected', `Reconnected; resumed after seq ${view.cursor}.`);
    }
  });
  source.addEventListener('ended', (event) => {
    source.close();
    const session = JSON.parse(event.data);
    view.ended = true;
    showMeta(session);
    setLive('');
    $('status').textContent = `${session.last_seq} entries`;
    banner('ended', 'Session ended' + (session.end_reason ? ': ' + session.end_reason : '') + '.');
  });
  source.addEventListener('stream_error', (event) => {
    const { error } = JSON.parse(event.data);
    if (error.code === 'UNAVAILABLE') return; // the server is going away; EventSource reconnects
    source.close();
    setLive('');
    banner('failed', error.message);
  });
  source.onerror = async () => {
    if (view.source !== source || view.ended) return;
    view.dropped = true;
    if (source.readyState === EventSource.CONNECTING) {
      setLive('retrying');
      banner('reconnecting', `Connection lost at seq ${view.cursor ?? 0}; reconnecting…`);
      return;
    }
    // Refused outright (a token, a deleted session): find out why.
    setLive('');
    source.close();
    try {
      await api('/api/v1/sessions/' + encodeURIComponent(view.id));
      banner('reconnecting', 'Connection lost; reconnecting…');
      setTimeout(() => { if (view.source === source && !view.paused) follow(); }, 1000);
    } catch (error) {
      banner('failed', error.message);
    }
  };
}

function stopFollowing() {
  if (view.source) view.source.close();
  view.source = null;
}

// ---- one session, opened around a seq (#/sessions/ID?seq=N) ----
//
// A page of entries from AROUND_BEFORE before the seq, with the seq's row
// highlighted and scrolled into the middle. Older and newer pages load on
// request; once a page reaches the newest entry the view follows live from
// there, as a plain session view does. Until then Pause has nothing to
// pause, and Jump to end opens the live view.

function entriesPath(params) {
  return sessionPath(view.id) + '/entries?' + params;
}

async function openAround() {
  const generation = view.generation;
  $('pause').disabled = true;
  $('status').textContent = 'loading…';
  const after = Math.max(0, view.around - AROUND_BEFORE - 1);
  const params = filterParams();
  params.set('after', after);
  params.set('limit', PAGE);
  let page;
  try {
    page = await api(entriesPath(params));
  } catch (error) {
    if (generation === view.generation) banner('failed', error.message);
    return;
  }
  if (generation !== view.generation) return;
  view.firstSeq = after;
  $('older').hidden = after === 0;
  addEntries(page.entries);
  view.cursor = page.next_cursor;
  highlight(view.around);
  pageArrived(page);
}

// After a page: live from its end when it reached the newest entry, else
// a button for the next one.
function pageArrived(page) {
  if (page.next_cursor >= page.last_seq) {
    follow();
    return;
  }
  $('status').textContent = `around seq ${view.around}`;
  $('newer').textContent = `Load newer entries (${page.last_seq - page.next_cursor} more stored)`;
  $('newer').hidden = false;
}

function highlight(seq) {
  const row = $('entries').querySelector(`.row[data-seq="${seq}"]`);
  if (!row) {
    notice(`Entry ${seq} is not shown: it does not exist or the filters hide it.`);
    return;
  }
  row.classList.add('target');
  row.scrollIntoView({ block: 'center' });
}

async function loadNewer() {
  const generation = view.generation;
  const params = filterParams();
  params.set('after', view.cursor);
  params.set('limit', PAGE);
  $('newer').disabled = true;
  try {
    const page = await api(entriesPath(params));
    if (generation !== view.generation) return;
    addEntries(page.entries);
    view.cursor = page.next_cursor;
    pageArrived(page);
  } catch (error) {
    if (generation === view.generation) banner('failed', error.message);
  } finally {
    $('newer').disabled = false;
  }
}

// Entries in (from, firstSeq], paged until the cursor passes firstSeq (a
// page may stop early at the response size limit), put above the rows
// shown without moving what is on screen.
async function loadOlder() {
  const generation = view.generation;
  const until = view.firstSeq;
  const from = Math.max(0, until - PAGE);
  const older = [];
  $('older').disabled = true;
  try {
    for (let cursor = from; cursor < until;) {
      const params = filterParams();
      params.set('after', cursor);
      params.set('limit', until - cursor);
      const page = await api(entriesPath(params));
      if (generation !== view.generation) return;
      older.push(...page.entries.filter((entry) => entry.seq <= until));
      if (!page.entries.length || page.next_cursor <= cursor) break;
      cursor = page.next_cursor;
    }
  } catch (error) {
    if (generation === view.generation) banner('failed', error.message);
    return;
  } finally {
    $('older').disabled = false;
  }
  // What was first stays where it was on screen (measured, since Chrome's
  // scroll anchoring may already have moved it).
  const log = $('log');
  const anchor = $('entries').firstChild;
  const offset = anchor ? anchor.offsetTop - log.scrollTop : 0;
  $('entries').prepend(...older.map(entryRow));
  view.rows += older.length;
  view.firstSeq = from;
  $('older').hidden = from === 0;
  if (anchor) log.scrollTop = anchor.offsetTop - offset;
}

// ---- downloads ----
//
// The links are plain links to the export route, which the browser streams
// to disk. With a token the route needs it too, and a link cannot send a
// header: a click then follows a copy of the link that carries the token
// as `access_token` (taken by this route as by the SSE ones), so the
// token never sits in the page's own links.

function exportPath(id, format) {
  return sessionPath(id) + '/export?format=' + format;
}

function showDownloads(id) {
  $('download').href = exportPath(id, 'text');
  $('download-ndjson').href = exportPath(id, 'ndjson');
}

function download(event) {
  if (!token()) return; // the link itself works
  event.preventDefault();
  const save = el('a');
  save.href = event.currentTarget.getAttribute('href') + '&access_token=' + encodeURIComponent(token());
  // `download`: an error answer fails the download instead of replacing the page.
  save.download = '';
  document.body.append(save);
  save.click();
  save.remove();
}

function addEntries(entries) {
  const log = $('log');
  const atEnd = view.follow;
  const fragment = document.createDocumentFragment();
  for (const entry of entries) {
    if (entry.seq <= view.lastSeq) {
      view.duplicates += 1; // never expected: counted so tests can tell
      continue;
    }
    view.lastSeq = entry.seq;
    fragment.append(entryRow(entry));
    view.rows += 1;
  }
  $('entries').append(fragment);
  $('entries').dataset.duplicates = String(view.duplicates);
  const container = $('entries');
  while (view.rows > MAX_ROWS) {
    container.firstChild.remove();
    view.rows -= 1;
    view.trimmed += 1;
  }
  if (view.trimmed) notice(`${view.trimmed} older entries are not shown (the view keeps the last ${MAX_ROWS}).`);
  if (view.trimmed && view.around && container.firstChild) {
    // Paging around a seq: Load older continues right above what is left.
    view.firstSeq = Number(container.firstChild.dataset.seq) - 1;
    $('older').hidden = false;
  }
  if (atEnd) log.scrollTop = log.scrollHeight;
}

function notice(text) {
  $('trimmed').textContent = text;
  $('trimmed').hidden = false;
}

function entryRow(entry) {
  const row = el('div', 'row level-' + entry.level);
  row.dataset.seq = entry.seq;
  const msg = el('span', 'msg');
  const details = detailText(entry);
  if (details) {
    const toggle = el('span', 'toggle', '▸');
    toggle.title = 'fields';
    toggle.onclick = () => {
      const open = row.querySelector('.fields');
      if (open) {
        open.remove();
        toggle.textContent = '▸';
      } else {
        row.append(el('div', 'fields', details));
        toggle.textContent = '▾';
      }
    };
    msg.append(toggle);
  }
  msg.append(...messageNodes(entry.message));
  row.append(...entryCells(entry, msg));
  return row;
}

// seq, time, level and logger cells, then `msg`.
function entryCells(entry, msg) {
  const logger = el('span', 'logger', entry.logger);
  logger.title = entry.logger;
  return [
    el('span', 'seq', entry.seq), el('span', 'time', shortTime(entry.timestamp)),
    el('span', 'lvl lvl-' + entry.level, entry.level.toUpperCase()), logger, msg,
  ];
}

function detailText(entry) {
  const extra = {};
  if (entry.fields && Object.keys(entry.fields).length) extra.fields = entry.fields;
  if (entry.format) extra.format = entry.format;
  if (entry.trace_id) extra.trace_id = entry.trace_id;
  if (entry.span_id) extra.span_id = entry.span_id;
  return Object.keys(extra).length ? JSON.stringify(extra, null, 2) : '';
}

function banner(kind, text) {
  const node = $('banner');
  node.className = kind;
  node.dataset.kind = kind;
  node.textContent = text || '';
  node.hidden = !kind;
  // The banner takes room from the log: keep the newest entry in sight.
  if (view.follow) $('log').scrollTop = $('log').scrollHeight;
}

function togglePause() {
  if (view.ended || $('pause').disabled) return;
  view.paused = !view.paused;
  $('pause').textContent = view.paused ? 'Resume' : 'Pause';
  if (view.paused) {
    stopFollowing();
    setLive('');
    $('status').textContent = 'paused';
    banner('paused', `Paused at seq ${view.cursor ?? 0}; Resume continues from there.`);
  } else {
    banner('');
    follow();
  }
}

function refilter() {
  stopFollowing();
  view.generation += 1;
  view.cursor = null;
  view.ended = false;
  view.paused = false;
  view.follow = !view.around;
  $('pause').textContent = 'Pause';
  clearEntries();
  banner('');
  start();
}

// An invalid regex refuses the follow stream, and EventSource reports no
// reason (it would retry forever): ask a one-entry page first, which
// answers with the error's message.
async function filtersValid() {
  if (!$('f-regex').checked || !$('f-text').value) return true;
  const generation = view.generation;
  const params = filterParams();
  params.set('limit', 1);
  try {
    await api(entriesPath(params));
    return generation === view.generation;
  } catch (error) {
    if (generation === view.generation) banner('failed', error.message);
    return false;
  }
}

// Jump to end: the newest entry; from a page around a seq, the live view.
function jumpToEnd() {
  if (view.around && $('pause').disabled) {
    location.hash = '#/sessions/' + encodeURIComponent(view.id);
    return;
  }
  view.follow = true;
  $('log').scrollTop = $('log').scrollHeight;
}

// ---- search across sessions (#/search?QUERY) ----
//
// The hash's query is the search API's query (contains or regex,
// ignore_case, level, logger, app, job, state, since, until, limit), so a
// search can be shared and reloaded. Hits arrive newest session first, seq
// ascending within one; each session's hits are shown under its app, job
// and state, and each hit opens the session view at its seq.

const SEARCH_FIELDS = { level: 's-level', logger: 's-logger', app: 's-app', job: 's-job', state: 's-state',
  since: 's-since', until: 's-until', limit: 's-limit' };
const search = { generation: 0 };

function openSearch(params) {
  $('search-view').hidden = false;
  $('crumb').textContent = '';
  $('s-regex').checked = params.has('regex');
  $('s-text').value = params.get('regex') ?? params.get('contains') ?? '';
  $('s-icase').checked = params.get('ignore_case') === 'true';
  for (const [key, id] of Object.entries(SEARCH_FIELDS)) $(id).value = params.get(key) ?? '';
  $('s-text').focus();
  search.generation += 1;
  if ([...params.keys()].length) runSearch(params);
  else showSearch('', 'Search every session: text, a regex, filters.', []);
}

function searchParams() {
  const params = new URLSearchParams();
  if ($('s-text').value) params.set($('s-regex').checked ? 'regex' : 'contains', $('s-text').value);
  if ($('s-icase').checked) params.set('ignore_case', 'true');
  for (const [key, id] of Object.entries(SEARCH_FIELDS)) {
    if ($(id).value.trim()) params.set(key, $(id).value.trim());
  }
  return params;
}

function submitSearch(event) {
  event.preventDefault();
  const hash = '#/search?' + searchParams();
  if (location.hash === hash) route(); // the same search again: run it anyway
  else location.hash = hash;
}

function showSearch(error, summary, groups) {
  $('search-error').textContent = error;
  $('search-error').hidden = !error;
  $('search-summary').textContent = summary;
  $('search-results').replaceChildren(...groups);
}

async function runSearch(params) {
  const generation = search.generation;
  showSearch('', 'searching…', []);
  let answer;
  try {
    answer = await api('/api/v1/search?' + params);
  } catch (error) {
    if (generation === search.generation) {
      showSearch((error.code ? error.code + ': ' : '') + error.message, '', []);
    }
    return;
  }
  if (generation !== search.generation) return;
  const groups = [];
  for (const hit of answer.hits || []) {
    const last = groups[groups.length - 1];
    if (last && last.id === hit.session_id) last.entries.push(hit.entry);
    else groups.push({ id: hit.session_id, entries: [hit.entry] });
  }
  showSearch('', searchSummary(answer, groups.length), groups.map(hitGroup));
  describeSessions(groups.map((group) => group.id), generation);
}

function searchSummary(answer, sessions) {
  const hits = (answer.hits || []).length;
  const scanned = answer.summary || {};
  let text = `${hits} ${hits === 1 ? 'hit' : 'hits'} in ${sessions} ${sessions === 1 ? 'session' : 'sessions'}`;
  text += ` (scanned ${scanned.sessions_scanned ?? 0} sessions, ${scanned.entries_scanned ?? 0} entries,`;
  text += ` ${megabytes(scanned.bytes_scanned ?? 0)})`;
  if (scanned.limit_reached) text += '; the limit was reached: narrow the search or raise the limit';
  return text;
}

function megabytes(bytes) {
  return (Number(bytes) / 1e6).toFixed(Number(bytes) < 1e5 ? 2 : 1) + ' MB';
}

function hitGroup(group) {
  const node = el('div', 'hit-group');
  node.dataset.session = group.id;
  const head = el('div', 'hit-head');
  const link = el('a', 'id', group.id);
  link.href = '#/sessions/' + encodeURIComponent(group.id);
  head.append(link, el('span', 'about'), el('span', 'muted', `${group.entries.length} ${group.entries.length === 1 ? 'hit' : 'hits'}`));
  const hits = el('div', 'hits');
  for (const entry of group.entries) {
    const row = el('a', 'row hit level-' + entry.level);
    row.href = `#/sessions/${encodeURIComponent(group.id)}?seq=${entry.seq}`;
    row.dataset.seq = entry.seq;
    const msg = el('span', 'msg');
    msg.append(...messageNodes(entry.message));
    row.append(...entryCells(entry, msg));
    hits.append(row);
  }
  node.append(head, hits);
  return node;
}

// Each group's app, job and state, from the sessions API, a few at a time.
async function describeSessions(ids, generation) {
  const queue = [...ids];
  const worker = async () => {
    while (queue.length && generation === search.generation) {
      const id = queue.shift();
      let about;
      try {
        about = sessionAbout(await api(sessionPath(id)));
      } catch (error) {
        about = [el('span', 'muted', error.status === 404 ? 'deleted' : error.message)];
      }
      const group = [...$('search-results').children].find((node) => node.dataset.session === id);
      if (group && generation === search.generation) group.querySelector('.about').replaceChildren(...about);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

function sessionAbout(session) {
  const parts = [];
  if (session.app_name) parts.push(el('span', 'muted', 'app '), el('b', 'app', session.app_name));
  if (session.job_id) parts.push(el('span', 'muted', ' job '), el('b', 'job', session.job_id));
  parts.push(document.createTextNode(' '), el('span', 'state state-' + session.state, session.state));
  return parts;
}

// ---- routing and wiring ----

// `#/sessions/ID?seq=N`, `#/search?QUERY` or the list.
function route() {
  stopFollowing();
  view.generation += 1;
  search.generation += 1;
  if (list.stream) list.stream.close();
  list.stream = null;
  $('list-view').hidden = true;
  $('session-view').hidden = true;
  $('search-view').hidden = true;
  setLive('');
  const hash = location.hash.replace(/^#/, '');
  const mark = hash.indexOf('?');
  const path = mark < 0 ? hash : hash.slice(0, mark);
  const params = new URLSearchParams(mark < 0 ? '' : hash.slice(mark + 1));
  const session = path.match(/^\/sessions\/(.+)$/);
  if (session) {
    const seq = Number(params.get('seq'));
    openSession(decodeURIComponent(session[1]), Number.isInteger(seq) && seq > 0 ? seq : 0);
  } else if (path === '/search') {
    openSearch(params);
  } else {
    openList();
  }
}

function debounce(fn, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

document.addEventListener('DOMContentLoaded', () => {
  for (const id of ['f-state', 'f-app', 'f-job']) $(id).addEventListener('input', renderListSoon);
  $('f-level').addEventListener('change', refilter);
  $('f-logger').addEventListener('input', debounce(refilter, 300));
  $('f-text').addEventListener('input', debounce(refilter, 300));
  for (const id of ['f-regex', 'f-icase']) $(id).addEventListener('change', refilter);
  $('pause').addEventListener('click', togglePause);
  $('jump').addEventListener('click', jumpToEnd);
  $('older').addEventListener('click', loadOlder);
  $('newer').addEventListener('click', loadNewer);
  for (const id of ['download', 'download-ndjson']) $(id).addEventListener('click', download);
  $('search-form').addEventListener('submit', submitSearch);
  $('colours').addEventListener('change', toggleColours);
  showColours(localStorage.getItem(COLOURS_KEY) !== 'off');
  $('log').addEventListener('scroll', () => {
    const log = $('log');
    view.follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
  });
  window.addEventListener('hashchange', route);
  route();
});
