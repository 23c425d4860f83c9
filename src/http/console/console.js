// The sessionlog web console: plain JavaScript, no build step, no
// dependencies. Three views, chosen by the URL hash: the sessions list
// (#/), kept live by the watch stream; one session (#/sessions/ID),
// followed live over SSE, or opened around one entry
// (#/sessions/ID?seq=N); and search across sessions (#/search?QUERY, the
// query being the search API's own). Every value from the server goes
// into the page as text (textContent), never as markup; colours in
// messages become styled spans built with DOM calls.
//
// The script is one file as served (src/http/assets.rs joins them in this
// order): this one (helpers, tokens, routing), colours.js, list.js,
// session.js, around.js, search.js.
'use strict';

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
