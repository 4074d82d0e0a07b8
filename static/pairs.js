// Shared by the pair page and the grid: the published IDs (compact ranges per psi band),
// the creativity (psi) filter, random picks that avoid IDs already on screen, preloading.
// Snippets are model output: they only ever become text nodes.
"use strict";
window.Bakery = (function () {
  const data = JSON.parse(document.getElementById("bakery-data").textContent);
  const STORE_KEY = "bakery-psi";

  // The distinct psi values, calm (low) to wild (high).
  const psiValues = [...new Set(data.bands.map((b) => b.psi).filter((p) => p !== null))].sort((a, b) => a - b);

  // The IDs of the bands with that psi (null: every band), as one indexable list.
  function Pool(psi) {
    const ranges = [];
    for (const band of data.bands) {
      if (psi !== null && band.psi !== psi) continue;
      for (const [a, b] of band.ranges) ranges.push([a, b, band.psi]);
    }
    const total = ranges.reduce((n, r) => n + r[1] - r[0] + 1, 0);

    function at(k) {
      for (const [a, b, p] of ranges) {
        if (k <= b - a) return { id: a + k, psi: p };
        k -= b - a + 1;
      }
      return null;
    }

    function find(id) {
      for (const [a, b, p] of ranges) if (id >= a && id <= b) return { id, psi: p };
      return null;
    }

    // Uniform over the pool minus `taken` (a Set of IDs); null when nothing is left.
    function pick(taken) {
      if (total === 0) return null;
      for (let i = 0; i < 32; i++) {
        const choice = at(Math.floor(Math.random() * total));
        if (!taken.has(choice.id)) return choice;
      }
      const start = Math.floor(Math.random() * total);  // crowded pool: walk it once
      for (let i = 0; i < total; i++) {
        const choice = at((start + i) % total);
        if (!taken.has(choice.id)) return choice;
      }
      return null;
    }

    return { total, at, find, pick };
  }

  function storedPsi() {
    try { return localStorage.getItem(STORE_KEY); } catch (e) { return null; }
  }

  // "0.6" → 0.6 when it names a configured band; anything else → null ("all").
  function parsePsi(text) {
    if (text === null || !/^-?[0-9]{1,3}(\.[0-9]{1,6})?$/.test(text)) return null;
    const value = Number(text);
    return psiValues.includes(value) ? value : null;
  }

  // The URL wins (a shared link), then the visitor's last choice.
  function chosenPsi() {
    const fromUrl = new URLSearchParams(location.search).get("psi");
    return fromUrl !== null ? parsePsi(fromUrl) : parsePsi(storedPsi());
  }

  // ?psi=… kept in the address with replaceState (never a new history entry).
  function urlWith(psi, hash) {
    const params = new URLSearchParams(location.search);
    if (psi === null) params.delete("psi"); else params.set("psi", String(psi));
    const query = params.toString().replace(/=(&|$)/g, "$1");  // `?scroll`, not `?scroll=`
    return location.pathname + (query ? "?" + query : "") + (hash || "");
  }

  function label(psi, i) {
    const mood = i === 0 ? " · calm" : i === psiValues.length - 1 ? " · wild" : "";
    return "ψ " + psi + mood;
  }

  // The creativity control: hidden with one band; calls onChange(psi) on each choice.
  function setupPsiControl(wrapper, select, onChange) {
    if (psiValues.length < 2) { wrapper.hidden = true; return null; }
    const options = [new Option("all", "all")].concat(psiValues.map((p, i) => new Option(label(p, i), String(p))));
    select.replaceChildren(...options);
    const psi = chosenPsi();
    select.value = psi === null ? "all" : String(psi);
    wrapper.hidden = false;
    select.addEventListener("change", () => {
      const next = parsePsi(select.value);
      try { localStorage.setItem(STORE_KEY, next === null ? "all" : String(next)); } catch (e) { /* private mode */ }
      history.replaceState(null, "", urlWith(next, location.hash));
      onChange(next);
    });
    return psi;
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

  // An <img> for the ID, resolved once decoded (so swapping it in never shows a half image).
  function loadImage(id, size) {
    const img = new Image();
    img.width = img.height = size;
    img.alt = "Generated anime face #" + id;
    img.src = "example-" + id + ".jpg";
    return img.decode().then(() => img);
  }

  return { data, psiValues, Pool, chosenPsi, urlWith, setupPsiControl, renderSnippet, loadImage };
})();
