// DOM helpers every view uses: element lookup and creation, the error banner, downloads.

export const $ = (id) => document.getElementById(id);

export const el = (tag, props = {}, ...children) => {
  const e = Object.assign(document.createElement(tag), props);
  for (const c of children) e.append(c);
  return e;
};

export const message = (err) => String(err && err.message ? err.message : err);

let errorTimer = 0;
// Shows `err` in the banner for 8 s (a newer error replaces it).
export function showError(err) {
  const box = $('error');
  box.textContent = message(err);
  box.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { box.hidden = true; }, 8000);
}

export function download(blob, name) {
  const a = el('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}
