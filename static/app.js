// Shows a random face + the snippet with the same ID, swapping every refresh seconds.
// The next pair is fully loaded (image decoded, text fetched) before it replaces the
// current one in a single DOM update. `index.html#123` shows pair 123 first; the address
// follows the pair on screen through replaceState, so there is still no history to go back.
"use strict";
(function () {
  const B = window.Bakery, data = B.data;
  const $ = (id) => document.getElementById(id);
  const pair = $("pair"), frame = $("frame"), snippet = $("snippet");
  const refreshButton = $("refresh"), toggleButton = $("toggle"), meta = $("meta");
  const everything = B.Pool(null);
  let pool = B.Pool(B.chosenPsi());
  let timer = null, stopped = false, current = null, loading = 0;

  // `#123` with a published ID; anything else (unknown, malformed) → null, so random.
  function requested() {
    const m = /^#(0|[1-9][0-9]{0,9})$/.exec(location.hash);
    return m ? everything.find(Number(m[1])) : null;
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

  function show(choice, loaded) {
    loaded.img.className = "fresh";
    // Never wider than twice the image's own pixels: a 512 px face is not blown up to 4K blocks.
    frame.style.maxWidth = 2 * loaded.img.naturalWidth + "px";
    frame.replaceChildren(loaded.img);
    snippet.replaceChildren(...B.renderSnippet(loaded.text));
    const link = document.createElement("a");
    link.href = "#" + choice.id;
    link.textContent = "#" + choice.id;
    meta.replaceChildren(link, choice.psi === null ? "" : " · ψ " + choice.psi);
    pair.hidden = false;
    current = choice;
    history.replaceState(null, "", B.urlWith(B.chosenPsi(), "#" + choice.id));
  }

  async function swap(first) {
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
      show(choice, loaded);
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
    if (wanted && (!current || wanted.id !== current.id)) swap(wanted);
  });
  B.setupPsiControl($("creativity"), $("psi"), (psi) => { pool = B.Pool(psi); swap(); });

  $("controls").hidden = false;
  if (everything.total > 0) swap(requested());
})();
