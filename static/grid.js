// The grid: a screenful of faces, one tile swapping at a time at staggered moments (each new
// face preloaded, then swapped in atomically). `grid.html?scroll`: an endless, slowly rising
// wall; a row that leaves the top is recycled below with new faces, loaded while still off
// screen. One requestAnimationFrame loop moves the wall by transform only; it pauses in
// hidden tabs and never runs under prefers-reduced-motion.
// The wall is always full, whatever the site's size: while the pool has IDs not on the wall,
// a tile gets one of those (no ID twice); a pool smaller than the wall repeats its IDs, the
// least shown first, never the same face in two neighbouring tiles (side by side or one
// above the other).
"use strict";
(function () {
  const B = window.Bakery, data = B.data;
  const $ = (id) => document.getElementById(id);
  const wall = $("wall"), track = $("track");
  const refreshButton = $("refresh"), toggleButton = $("toggle"), modeLink = $("mode");
  const calm = matchMedia("(prefers-reduced-motion: reduce)").matches;
  const moving = new URLSearchParams(location.search).has("scroll") && !calm;
  const TILE_PX = 320;  // target tile width: 2 columns on a phone, 12 on a 4K screen

  let pool = B.Pool(B.chosenPsi());
  let rows = [];  // [{el, tiles: [{el, row, col, id, next}]}], top to bottom
  let tileSize = 0, offset = 0, lastFrame = null, frameRequest = null;
  let timer = null, stopped = false, order = [], generation = 0;

  // The IDs a tile shows or is loading.
  function idsOf(tile) {
    return [tile.id, tile.next].filter((id) => id !== null);
  }

  // The face a tile shows once its pending swap (if any) lands. Only the moving wall has
  // several swaps in flight, all in the row below the screen, so neighbours are compared by
  // these: a pool of three IDs still fits a new row.
  function eventual(tile) {
    return tile.next !== null ? tile.next : tile.id;
  }

  // Up to four tiles: left and right in its row, the same column in the rows above and below.
  function neighbours(tile) {
    const r = rows.indexOf(tile.row), c = tile.col, around = [];
    for (const row of [rows[r - 1], rows[r + 1]]) if (row) around.push(row.tiles[c]);
    for (const cc of [c - 1, c + 1]) if (tile.row.tiles[cc]) around.push(tile.row.tiles[cc]);
    return around;
  }

  // How many tiles show or are loading each ID, leaving out the tile being refilled.
  function wallCounts(except) {
    const counts = new Map();
    for (const row of rows) for (const t of row.tiles) {
      if (t === except) continue;
      for (const id of new Set(idsOf(t))) counts.set(id, (counts.get(id) || 0) + 1);
    }
    return counts;
  }

  // A face for one tile: an ID not on the wall (`shown.has(id)` false) when the pool has one;
  // otherwise, among the IDs not in `banned`, one of the least shown (`counts`). null when
  // every ID is banned (a pool of one or two IDs cannot fill a wall without neighbours repeating).
  function choose(shown, counts, banned) {
    const fresh = pool.pick(shown);
    if (fresh) return fresh;
    let best = [], fewest = Infinity;
    for (let k = 0; k < pool.total; k++) {  // reached only when the pool is all on the wall: small
      const choice = pool.at(k);
      if (banned.has(choice.id)) continue;
      const n = counts.get(choice.id) || 0;
      if (n < fewest) { fewest = n; best = []; }
      if (n === fewest) best.push(choice);
    }
    return best.length ? best[Math.floor(Math.random() * best.length)] : null;
  }

  // A face for the tile: not one of its neighbours'; when it swaps in place (`change`), not
  // its current one either (a recycled row's old face may come back in its new place).
  function chooseFor(tile, change) {
    const counts = wallCounts(tile);
    const banned = new Set(neighbours(tile).map(eventual));
    if (change && tile.id !== null) banned.add(tile.id);
    return choose({ has: (id) => counts.has(id) || id === tile.id }, counts, banned);
  }

  function tileHref(id) {
    const psi = B.chosenPsi();
    return "index.html" + (psi === null ? "" : "?psi=" + psi) + "#" + id;
  }

  // Load a new face for the tile off screen, then swap it in with one DOM update.
  function refill(tile, change) {
    tile.next = null;
    const choice = chooseFor(tile, change);
    if (!choice) return Promise.resolve(false);
    tile.next = choice.id;
    const mine = generation;
    return B.loadImage(choice.id, 1024).then((img) => {
      if (mine !== generation || tile.next !== choice.id) return false;
      img.className = "fresh";
      tile.el.replaceChildren(img);
      tile.el.href = tileHref(choice.id);
      tile.el.hidden = false;
      tile.id = choice.id;
      tile.next = null;
      return true;
    }, () => { tile.next = null; return false; });
  }

  function makeRow(columns) {
    const row = { el: document.createElement("div"), tiles: [] };
    row.el.className = "row";
    for (let c = 0; c < columns; c++) {
      const a = document.createElement("a");
      a.className = "tile";
      a.hidden = true;
      row.el.append(a);
      row.tiles.push({ el: a, row, col: c, id: null, next: null });
    }
    return row;
  }

  // Columns from the width, rows to fill the height (moving: plus the row scrolling in and
  // one row ahead).
  function layout() {
    generation++;
    order = [];
    const columns = Math.min(12, Math.max(2, Math.round(wall.clientWidth / TILE_PX)));
    tileSize = wall.clientWidth / columns;
    const count = Math.ceil(wall.clientHeight / tileSize) + (moving ? 2 : 0);
    wall.style.setProperty("--cols", columns);
    rows = [];
    for (let r = 0; r < count; r++) rows.push(makeRow(columns));
    track.replaceChildren(...rows.map((r) => r.el));
    offset = 0;
    track.style.transform = "";
    fillAll();
  }

  // Every tile at once (start, Refresh, another psi): plan the whole wall row by row, each
  // tile unlike its left and upper neighbours, load every face, then one update. While the
  // pool is at least twice the wall, no face from before either.
  function fillAll() {
    const mine = ++generation;
    const tiles = rows.flatMap((r) => r.tiles);
    const before = new Set(tiles.flatMap(idsOf));
    const avoidBefore = pool.total >= 2 * tiles.length;
    const counts = new Map(), plan = new Map();  // tile → choice
    for (const t of tiles) {
      const up = rows[rows.indexOf(t.row) - 1], left = t.row.tiles[t.col - 1];
      const banned = new Set([up && plan.get(up.tiles[t.col]), left && plan.get(left)].filter(Boolean).map((c) => c.id));
      const choice = choose({ has: (id) => counts.has(id) || (avoidBefore && before.has(id)) }, counts, banned);
      plan.set(t, choice);
      if (choice) counts.set(choice.id, (counts.get(choice.id) || 0) + 1);
    }
    const picks = tiles.map((t) => plan.get(t));
    tiles.forEach((t, i) => { t.next = picks[i] ? picks[i].id : null; });
    // A repeated ID is one download (the browser's image cache), decoded once per tile.
    Promise.all(picks.map((c) => (c ? B.loadImage(c.id, 1024).catch(() => null) : null))).then((imgs) => {
      if (mine !== generation) return;
      tiles.forEach((t, i) => {
        const img = imgs[i];
        t.next = null;
        t.id = img ? picks[i].id : null;
        t.el.hidden = !img;
        if (img) { t.el.replaceChildren(img); t.el.href = tileHref(picks[i].id); }
      });
      restart();
    });
  }

  // A tile may swap unless it shows the only copy of an ID while the whole pool is on the
  // wall: then every ID of the pool stays on screen (a pool smaller than the wall).
  function swappable(tile) {
    if (tile.id === null) return true;
    const counts = wallCounts(tile);
    return counts.has(tile.id) || pool.pick({ has: (id) => counts.has(id) || id === tile.id }) !== null;
  }

  // Still grid: one tile per tick, in a fresh shuffled order each round, each tile about
  // every refresh_seconds; the next tick is scheduled only after this swap is on screen.
  function tick() {
    const count = rows.reduce((n, r) => n + r.tiles.length, 0);
    let tile = null;
    for (let tries = 0; tries <= count && (tile === null || !swappable(tile)); tries++) {
      if (order.length === 0) order = rows.flatMap((r) => r.tiles).sort(() => Math.random() - 0.5);
      tile = order.pop();
    }
    const mine = generation;
    refill(tile, true).then(() => { if (mine === generation) scheduleTick(); });
  }

  function scheduleTick() {
    clearTimeout(timer);
    const tiles = rows.reduce((n, r) => n + r.tiles.length, 0);
    if (!stopped && !moving && tiles > 0) {
      timer = setTimeout(tick, Math.max(200, (data.refresh_seconds * 1000) / tiles));
    }
  }

  // Moving wall: about one row every 6 s. When the top row has left the screen it moves to
  // the bottom (one row below the last visible one) and gets new faces there.
  function frame(now) {
    frameRequest = null;
    if (stopped || document.hidden) return;
    if (lastFrame !== null) offset += ((now - lastFrame) / 1000) * (tileSize / 6);
    lastFrame = now;
    while (offset >= tileSize && rows.length > 1) {
      offset -= tileSize;
      const top = rows.shift();
      rows.push(top);
      track.append(top.el);
      // Off screen now, below the last row: new faces, unlike the row above and each other. It
      // keeps its old faces until the new ones are decoded; a tile that no ID fits (a pool of
      // one or two) is emptied rather than showing a face next to its twin.
      top.tiles.forEach((t) => refill(t).then((ok) => {
        if (!ok && t.next === null && neighbours(t).some((n) => eventual(n) === t.id)) { t.el.hidden = true; t.id = null; }
      }));
    }
    track.style.transform = "translate3d(0," + (-offset).toFixed(2) + "px,0)";
    frameRequest = requestAnimationFrame(frame);
  }

  function restart() {
    if (!moving) { scheduleTick(); return; }
    lastFrame = null;
    if (frameRequest === null && !stopped && !document.hidden) frameRequest = requestAnimationFrame(frame);
  }

  function halt() {
    clearTimeout(timer);
    if (frameRequest !== null) cancelAnimationFrame(frameRequest);
    frameRequest = null;
  }

  refreshButton.addEventListener("click", () => { halt(); order = []; fillAll(); });
  toggleButton.addEventListener("click", () => {
    stopped = !stopped;
    toggleButton.textContent = stopped ? "Resume" : "Stop";
    toggleButton.setAttribute("aria-pressed", String(stopped));
    if (stopped) halt(); else restart();
  });
  document.addEventListener("visibilitychange", () => { if (document.hidden) halt(); else restart(); });
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { halt(); layout(); }, 250);
  });
  B.setupPsiControl($("creativity"), $("psi"), (psi) => { pool = B.Pool(psi); halt(); order = []; fillAll(); });

  modeLink.textContent = moving ? "Still grid" : "Moving grid";
  modeLink.href = moving ? "grid.html" : "grid.html?scroll";
  modeLink.hidden = calm;
  document.body.classList.toggle("moving", moving);
  $("controls").hidden = false;
  layout();
})();
