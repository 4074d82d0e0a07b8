// The grid: a screenful of faces, one tile swapping at a time at staggered moments (each new
// face preloaded, then swapped in atomically). `grid.html?scroll`: an endless, slowly rising
// wall; a row that leaves the top is recycled below with new faces, loaded while still off
// screen. One requestAnimationFrame loop moves the wall by transform only; it pauses in
// hidden tabs and never runs under prefers-reduced-motion. The wall is always full: no ID
// twice while the pool has enough; a smaller pool repeats IDs, never in neighbouring tiles.
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

  // Tile → the IDs it shows or is loading; the face it will show once its swap (if any) lands.
  const idsOf = (t) => [t.id, t.next].filter((id) => id !== null);
  const eventual = (t) => (t.next !== null ? t.next : t.id);

  // Left and right in its row, the same column in the rows above and below.
  function neighbours(tile) {
    const r = rows.indexOf(tile.row), c = tile.col;
    return [rows[r - 1] && rows[r - 1].tiles[c], rows[r + 1] && rows[r + 1].tiles[c],
      tile.row.tiles[c - 1], tile.row.tiles[c + 1]].filter(Boolean);
  }

  // A face for the tile: an ID not on the wall (nor in `avoid`) while the pool has one; else
  // one of the least shown, never a neighbour's (compared by what they will show: swaps in
  // flight are all off screen) nor, with `change`, its own. null when nothing fits (a pool
  // of one ID: the tile stays empty rather than beside its twin).
  function chooseFor(tile, change, avoid) {
    const counts = new Map();
    for (const row of rows) for (const t of row.tiles) {
      if (t !== tile) for (const id of new Set(idsOf(t))) counts.set(id, (counts.get(id) || 0) + 1);
    }
    const fresh = pool.pick({ has: (id) => counts.has(id) || id === tile.id || (avoid && avoid.has(id)) });
    if (fresh) return fresh;
    const banned = new Set(neighbours(tile).map(eventual));
    if (change) banned.add(tile.id);
    let best = [], fewest = Infinity;
    for (let k = 0; k < pool.total; k++) {  // only when the whole pool is on the wall: small
      const choice = pool.at(k), n = counts.get(choice.id) || 0;
      if (banned.has(choice.id) || n > fewest) continue;
      if (n < fewest) { fewest = n; best = []; }
      best.push(choice);
    }
    return best.length ? best[Math.floor(Math.random() * best.length)] : null;
  }

  function tileHref(id) {
    const psi = B.chosenPsi();
    return "index.html" + (psi === null ? "" : "?psi=" + psi) + "#" + id;
  }

  // Load a new face for the tile off screen, then swap it in with one DOM update.
  function refill(tile, change) {
    tile.next = null;
    const choice = chooseFor(tile, change, null);
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

  // Every tile at once (start, Refresh, another psi): choose row by row, load every face,
  // then one update. While the pool is twice the wall, no face from before either.
  function fillAll() {
    const mine = ++generation;
    const tiles = rows.flatMap((r) => r.tiles);
    const before = new Set(tiles.flatMap(idsOf));
    const avoid = pool.total >= 2 * tiles.length ? before : null;
    tiles.forEach((t) => { t.id = t.next = null; });  // the old faces stay on screen meanwhile
    const picks = tiles.map((t) => { const c = chooseFor(t, false, avoid); t.next = c && c.id; return c; });
    // A repeated ID is one download (the browser's image cache), decoded once per tile.
    Promise.all(picks.map((c) => (c ? B.loadImage(c.id, 1024).catch(() => null) : null))).then((imgs) => {
      if (mine !== generation) return;
      tiles.forEach((t, i) => {
        t.next = null;
        t.id = imgs[i] ? picks[i].id : null;
        t.el.hidden = !imgs[i];
        if (imgs[i]) { t.el.replaceChildren(imgs[i]); t.el.href = tileHref(t.id); }
      });
      restart();
    });
  }

  // Still grid: one tile per tick, in a fresh shuffled order each round, each tile about
  // every refresh_seconds; the next tick is scheduled only after this swap is on screen.
  // While the whole pool is on the wall, a tile showing an ID's only copy is passed over,
  // so every ID stays on screen.
  function tick() {
    const tiles = rows.flatMap((r) => r.tiles);
    let tile = null;
    for (let tries = 0; tries <= tiles.length && (!tile || (tile.id !== null && !swappable(tile, tiles))); tries++) {
      if (order.length === 0) order = tiles.slice().sort(() => Math.random() - 0.5);
      tile = order.pop();
    }
    const mine = generation;
    refill(tile, true).then(() => { if (mine === generation) scheduleTick(); });
  }

  function swappable(tile, tiles) {
    return tiles.some((t) => t !== tile && idsOf(t).includes(tile.id)) ||
      pool.pick({ has: (id) => id === tile.id || tiles.some((t) => idsOf(t).includes(id)) }) !== null;
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
      // Off screen now, below the last row: new faces, each shown once decoded; a tile that no
      // ID fits (a pool of one) is emptied rather than left beside its twin.
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
