// The web console's session view (#/sessions/ID): entries followed live
// over SSE, filters, pause, the rows, and downloads.

const TAIL = 1000; // a session view starts with the last TAIL entries
const MAX_ROWS = 5000; // older rows leave the DOM so large sessions stay smooth

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
