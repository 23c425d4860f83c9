// The web console's search across sessions (#/search?QUERY).
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
  text += ` ${sizeText(Number(scanned.bytes_scanned ?? 0))})`;
  if (scanned.limit_reached) text += '; the limit was reached: narrow the search or raise the limit';
  return text;
}

function sizeText(bytes) {
  if (bytes < 1e3) return `${bytes} bytes`;
  if (bytes < 1e6) return `${(bytes / 1e3).toFixed(1)} kB`;
  return `${(bytes / 1e6).toFixed(1)} MB`;
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
