// The web console's sessions list (#/), kept live by the watch stream.

const MAX_LIST = 500; // the most sessions the list renders

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
