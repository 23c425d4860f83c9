// The web console's session view opened around one entry
// (#/sessions/ID?seq=N).
//
// A page of entries from AROUND_BEFORE before the seq, with the seq's row
// highlighted and scrolled into the middle. Older and newer pages load on
// request; once a page reaches the newest entry the view follows live from
// there, as a plain session view does. Until then Pause has nothing to
// pause, and Jump to end opens the live view.

const AROUND_BEFORE = 100; // a view opened at a seq starts this many entries before it
const PAGE = 300; // entries per page when paging around a seq

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
