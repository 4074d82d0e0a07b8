// Shows a random face + the snippet with the same ID, swapping every refresh seconds.
// The next pair is fully loaded (image decoded, text fetched) before it replaces the
// current one in a single DOM update. Snippets are model output: inserted as text only.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("bakery-data").textContent);
  const $ = (id) => document.getElementById(id);
  const pair = $("pair"), frame = $("frame"), snippet = $("snippet");
  const refreshButton = $("refresh"), toggleButton = $("toggle"), meta = $("meta");
  const total = data.bands.reduce((n, b) => n + b.ranges.reduce((m, r) => m + r[1] - r[0] + 1, 0), 0);
  let timer = null, stopped = false, current = null, loading = 0;

  // The k-th published ID (0 ≤ k < total), walking the bands' ranges in order.
  function idAt(k) {
    for (const band of data.bands) {
      for (const [a, b] of band.ranges) {
        if (k <= b - a) return { id: a + k, psi: band.psi };
        k -= b - a + 1;
      }
    }
    return null;
  }

  function indexOf(id) {
    let k = 0;
    for (const band of data.bands) {
      for (const [a, b] of band.ranges) {
        if (id >= a && id <= b) return k + id - a;
        k += b - a + 1;
      }
    }
    return -1;
  }

  // Uniform over every published ID except the one on screen.
  function pickFresh() {
    const skip = current ? indexOf(current.id) : -1;
    if (skip < 0 || total < 2) return idAt(Math.floor(Math.random() * total));
    const k = Math.floor(Math.random() * (total - 1));
    return idAt(k >= skip ? k + 1 : k);
  }

  // A leading `_Title_` becomes <em>Title</em>; everything stays text nodes.
  function renderSnippet(text) {
    const match = /^_([^_\n]{1,300})_/.exec(text);
    const nodes = [];
    if (match) {
      const em = document.createElement("em");
      em.textContent = match[1];
      nodes.push(em);
      text = text.slice(match[0].length);
    }
    nodes.push(document.createTextNode(text));
    return nodes;
  }

  async function loadPair(choice) {
    const img = new Image();
    img.width = img.height = 1024;
    img.alt = "Generated anime face #" + choice.id;
    img.src = "example-" + choice.id + ".jpg";
    const [text] = await Promise.all([
      fetch("snippet-" + choice.id + ".txt").then((r) => {
        if (!r.ok) throw new Error("snippet " + choice.id + ": HTTP " + r.status);
        return r.text();
      }),
      img.decode(),
    ]);
    return { img, text };
  }

  async function swap() {
    const ticket = ++loading;
    clearTimeout(timer);
    for (let attempt = 0; attempt < 3; attempt++) {
      const choice = pickFresh();
      if (!choice) return;
      let loaded;
      try {
        loaded = await loadPair(choice);
      } catch (err) {
        continue;  // a missing or broken pair: try another ID
      }
      if (ticket !== loading) return;  // a newer refresh overtook this one
      loaded.img.className = "fresh";
      frame.replaceChildren(loaded.img);
      snippet.replaceChildren(...renderSnippet(loaded.text));
      meta.textContent = "#" + choice.id + (choice.psi === null ? "" : " · ψ " + choice.psi);
      pair.hidden = false;
      current = choice;
      break;
    }
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(swap, data.refresh_seconds * 1000);
  }

  refreshButton.addEventListener("click", swap);
  toggleButton.addEventListener("click", () => {
    stopped = !stopped;
    toggleButton.textContent = stopped ? "Resume" : "Stop";
    toggleButton.setAttribute("aria-pressed", String(stopped));
    if (stopped) clearTimeout(timer); else schedule();
  });

  $("controls").hidden = false;
  if (total > 0) swap();
})();
