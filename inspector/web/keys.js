// keys.js: the page's keyboard shortcuts, one table for the handler and the help dialog.

import { h, fill } from './dom.js';

/**
 * Installs the shortcuts. `actions` maps an action name to a function; `bindings` are
 * [key, action, words] rows. Keys typed into a form field are left to the field.
 */
export function installKeys(bindings, actions) {
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    const typing = t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement;
    if (typing && e.key !== 'Escape') return;
    const row = bindings.find(([key]) => key === e.key);
    if (!row) return;
    const action = actions[row[1]];
    if (!action) return;
    // Escape inside a grid is the grid's own (it goes back a level).
    if (e.key === 'Escape' && t instanceof Element && t.closest('[role="grid"]') && row[1] !== 'help') return;
    e.preventDefault();
    action();
  });
}

/** The help dialog's content. */
export function renderHelp(root, bindings, gridKeys) {
  fill(root,
    h('div', { class: 'keys' }, bindings.map(([key, , words]) => [h('span', {}, h('kbd', {}, key === ' ' ? 'Space' : key)), h('span', {}, words)])),
    h('h3', {}, 'In a grid (directory, page table, memory)'),
    h('div', { class: 'keys' }, gridKeys.map(([key, words]) => [h('span', {}, h('kbd', {}, key)), h('span', {}, words)])));
}
