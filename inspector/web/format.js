// format.js: numbers as the monitor prints and reads them ("0x%08x", decimal or 0x hex input).

/** An address or raw entry as the monitor writes it: "0x" and eight hex digits. */
export function hex(n) {
  if (n === null || n === undefined) return '-';
  const v = Number(n);
  if (v >= 0x100000000) return '0x' + v.toString(16);
  return '0x' + (v >>> 0).toString(16).padStart(8, '0');
}

/** A hex string from the API ("0x0019f000") as a number; null stays null. */
export function num(text) {
  if (text === null || text === undefined) return null;
  if (typeof text === 'number') return text;
  return parseNumber(text);
}

/**
 * The monitor's number syntax (kernel/docs/monitor.md): decimal or 0x/0X hex, no sign, no
 * suffix, not empty. Returns null when the text is not such a number.
 */
export function parseNumber(text) {
  const t = String(text).trim();
  let m = /^0[xX]([0-9a-fA-F]{1,16})$/.exec(t);
  if (m) return parseInt(m[1], 16);
  m = /^[0-9]{1,20}$/.exec(t);
  if (m) return parseInt(t, 10);
  return null;
}

/** Bytes in the units a learner thinks in. */
export function bytes(n) {
  if (n >= 1 << 20 && n % (1 << 20) === 0) return `${n / (1 << 20)} MiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KiB`;
  return `${n} B`;
}

export function plural(n, one, many = one + 's') {
  return `${n} ${n === 1 ? one : many}`;
}

/** A time of day with milliseconds, for "as of" lines. */
export function clock(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

/** The 32 bits of a number as a binary string, most significant first. */
export function bits32(n) {
  return (n >>> 0).toString(2).padStart(32, '0');
}
