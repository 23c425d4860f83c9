// The sessionlog web console: plain JavaScript, no build step, no
// dependencies. Two views, chosen by the URL hash: the sessions list
// (#/), kept live by the watch stream, and one session (#/sessions/ID),
// followed live over SSE. Every value from the server goes into the page
// as text (textContent), never as markup.
'use strict';

const TAIL = 1000; // a session view starts with the last TAIL entries
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

const view = {
  id: '', source: null, cursor: null, lastSeq: 0, rows: 0, trimmed: 0, duplicates: 0,
  paused: false, ended: false, follow: true, dropped: false,
};

async function openSession(id) {
  Object.assign(view, {
    id, source: null, cursor: null, lastSeq: 0, rows: 0, trimmed: 0, duplicates: 0,
    paused: false, ended: false, follow: true, dropped: false,
  });
  $('session-view').hidden = false;
  $('crumb').textContent = id;
  $('pause').textContent = 'Pause';
  clearEntries();
  banner('');
  try {
    showMeta(await api('/api/v1/sessions/' + encodeURIComponent(id)));
  } catch (error) {
    banner('failed', error.status === 404 ? `Session ${id} does not exist.` : error.message);
    return;
  }
  follow();
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
  view.rows = 0;
  view.trimmed = 0;
  view.lastSeq = 0;
}

function filterParams() {
  const params = new URLSearchParams();
  if ($('f-level').value) params.set('level', $('f-level').value);
  if ($('f-logger').value.trim()) params.set('logger', $('f-logger').value.trim());
  if ($('f-text').value) params.set('contains', $('f-text').value);
  return params;
}

// Opens the follow stream: from the kept cursor after a pause, else the
// last TAIL entries. After a dropped connection EventSource reconnects by
// itself and sends the last batch id as Last-Event-ID: the server resumes
// right after it, so nothing is missed or repeated.
function follow() {
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
  msg.append(document.createTextNode(entry.message));
  row.append(
    el('span', 'seq', entry.seq), el('span', 'time', shortTime(entry.timestamp)),
    el('span', 'lvl lvl-' + entry.level, entry.level.toUpperCase()), el('span', 'logger', entry.logger), msg,
  );
  row.querySelector('.logger').title = entry.logger;
  return row;
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
  if (view.ended) return;
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
  view.cursor = null;
  view.ended = false;
  view.paused = false;
  $('pause').textContent = 'Pause';
  clearEntries();
  banner('');
  follow();
}

// ---- routing and wiring ----

function route() {
  stopFollowing();
  if (list.stream) list.stream.close();
  list.stream = null;
  $('list-view').hidden = true;
  $('session-view').hidden = true;
  setLive('');
  const match = location.hash.match(/^#\/sessions\/(.+)$/);
  if (match) openSession(decodeURIComponent(match[1]));
  else openList();
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
  $('pause').addEventListener('click', togglePause);
  $('jump').addEventListener('click', () => {
    view.follow = true;
    $('log').scrollTop = $('log').scrollHeight;
  });
  $('log').addEventListener('scroll', () => {
    const log = $('log');
    view.follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
  });
  window.addEventListener('hashchange', route);
  route();
});
