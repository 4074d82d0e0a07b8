// Shows a random face + the snippet with the same ID, swapping every refresh seconds.
// The next pair is fully loaded (image decoded, text fetched) before it replaces the
// current one in a single DOM update. `index.html#123` shows pair 123 first; the address
// follows the pair on screen through replaceState, so there is still no history to go back.
// An address naming no published pair (`#999`, `#abc`), opened or typed in later, gets a
// notice saying so, and the address goes back to the pair on screen.
"use strict";
(function () {
  const B = window.Bakery, data = B.data;
  const $ = (id) => document.getElementById(id);
  const pair = $("pair"), frame = $("frame"), snippet = $("snippet");
  const refreshButton = $("refresh"), toggleButton = $("toggle"), meta = $("meta"), notice = $("notice");
  const everything = B.Pool(null);
  let pool = B.Pool(B.chosenPsi());
  let timer = null, stopped = false, current = null, loading = 0;

  // What the address asks for: null (no `#…`), { choice } for a published ID, or
  // { unknown: "the text after #" } for anything else (an unknown ID, a malformed one).
  function requested() {
    if (location.hash.length <= 1) return null;
    const m = /^#(0|[1-9][0-9]{0,9})$/.exec(location.hash);
    const choice = m ? everything.find(Number(m[1])) : null;
    return choice ? { choice } : { unknown: location.hash.slice(1) };
  }

  // "Pair #999 does not exist." (the text stays a text node, shortened; percent-escapes decoded).
  function sayMissing(text) {
    try { text = decodeURIComponent(text); } catch (e) { /* shown as typed */ }
    const shown = text.length > 24 ? text.slice(0, 24) + "…" : text;
    notice.textContent = "Pair #" + shown + " does not exist.";
    notice.hidden = false;
  }

  async function loadPair(choice) {
    const [text, img] = await Promise.all([
      fetch("snippet-" + choice.id + ".txt").then((r) => {
        if (!r.ok) throw new Error("snippet " + choice.id + ": HTTP " + r.status);
        return r.text();
      }),
      B.loadImage(choice.id, 1024),
    ]);
    return { img, text };
  }

  function show(choice, loaded, keepNotice) {
    loaded.img.className = "fresh";
    // Never wider than twice the image's own pixels: a 512 px face is not blown up to 4K blocks.
    // The stylesheet sizes the frame, and the column around it, from this.
    document.documentElement.style.setProperty("--face-cap", 2 * loaded.img.naturalWidth + "px");
    frame.replaceChildren(loaded.img);
    if (!keepNotice) notice.hidden = true;
    snippet.replaceChildren(...B.renderSnippet(loaded.text));
    const link = document.createElement("a");
    link.href = "#" + choice.id;
    link.textContent = "#" + choice.id;
    meta.replaceChildren(link, choice.psi === null ? "" : " · ψ " + choice.psi);
    pair.hidden = false;
    current = choice;
    history.replaceState(null, "", B.urlWith(B.chosenPsi(), "#" + choice.id));
  }

  // `keepNotice`: the first pair after an address naming no pair keeps the notice up.
  async function swap(first, keepNotice) {
    const ticket = ++loading;
    clearTimeout(timer);
    for (let attempt = 0; attempt < 3; attempt++) {
      const choice = first && attempt === 0 ? first : pool.pick(new Set(current ? [current.id] : []));
      if (!choice) break;
      let loaded;
      try {
        loaded = await loadPair(choice);
      } catch (err) {
        continue;  // a missing or broken pair: try another ID
      }
      if (ticket !== loading) return;  // a newer refresh overtook this one
      show(choice, loaded, keepNotice);
      break;
    }
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(swap, data.refresh_seconds * 1000);
  }

  refreshButton.addEventListener("click", () => swap());
  toggleButton.addEventListener("click", () => {
    stopped = !stopped;
    toggleButton.textContent = stopped ? "Resume" : "Stop";
    toggleButton.setAttribute("aria-pressed", String(stopped));
    if (stopped) clearTimeout(timer); else schedule();
  });
  window.addEventListener("hashchange", () => {
    const wanted = requested();
    if (wanted && wanted.choice) {
      if (!current || wanted.choice.id !== current.id) swap(wanted.choice);
      return;
    }
    if (wanted) sayMissing(wanted.unknown);
    // The pair on screen stays, and so does its address: never an address naming another pair.
    if (current) history.replaceState(null, "", B.urlWith(B.chosenPsi(), "#" + current.id));
  });
  B.setupPsiControl($("creativity"), $("psi"), (psi) => { pool = B.Pool(psi); swap(); });

  $("controls").hidden = false;
  const asked = requested();
  if (asked && asked.unknown !== undefined) sayMissing(asked.unknown);
  if (everything.total > 0) swap(asked && asked.choice, true);
})();
