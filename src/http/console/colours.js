// The web console's colours: SGR sequences in a message become styled
// spans, the header's toggle turns them off.
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
