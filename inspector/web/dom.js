// dom.js: small DOM helpers (element building, the shared tooltip), so the views stay about paging.

/**
 * h('div', {class: 'x', onclick: f}, child, 'text', ...): an element. Attributes starting
 * with "on" become listeners; `dataset` and `style` objects are merged; null children skip.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') Object.assign(el.style, v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A definition list from [term, value] pairs. */
export function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

const tip = () => document.getElementById('tooltip');

/** Shows the tooltip near a pointer event (content: nodes or text). */
export function showTip(event, ...content) {
  const t = tip();
  fill(t, ...content);
  t.hidden = false;
  const pad = 14;
  const { innerWidth: w, innerHeight: ht } = window;
  const r = t.getBoundingClientRect();
  let x = event.clientX + pad;
  let y = event.clientY + pad;
  if (x + r.width > w - 4) x = Math.max(4, event.clientX - r.width - pad);
  if (y + r.height > ht - 4) y = Math.max(4, event.clientY - r.height - pad);
  t.style.left = `${x}px`;
  t.style.top = `${y}px`;
}

/** Shows the tooltip beside an element (keyboard focus). */
export function showTipAt(el, ...content) {
  const r = el.getBoundingClientRect();
  showTip({ clientX: r.right, clientY: r.bottom }, ...content);
}

export function hideTip() {
  tip().hidden = true;
}

/** A small swatch of a state pattern (the same classes the grids use). */
export function swatch(state, extra = null) {
  return h('span', { class: `swatch st-${state}`, 'aria-hidden': 'true' }, extra);
}
