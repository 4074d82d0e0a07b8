// The grid: a screenful of faces, one tile swapping at a time at staggered moments (each new
// face preloaded, then swapped in atomically), no ID twice on screen. `grid.html?scroll`:
// an endless, slowly rising wall; a row that leaves the top is recycled below with new
// faces, loaded while still off screen. One requestAnimationFrame loop moves the wall by
// transform only; it pauses in hidden tabs and never runs under prefers-reduced-motion.
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
  let rows = [];  // [{el, tiles: [{el, id, next}]}], top to bottom
  let tileSize = 0, offset = 0, lastFrame = null, frameRequest = null;
  let timer = null, stopped = false, order = [], generation = 0;

  // IDs on screen or on their way there: never picked twice.
  function taken() {
    const ids = new Set();
    for (const row of rows) for (const t of row.tiles) {
      if (t.id !== null) ids.add(t.id);
      if (t.next !== null) ids.add(t.next);
    }
    return ids;
  }

  function tileHref(id) {
    const psi = B.chosenPsi();
    return "index.html" + (psi === null ? "" : "?psi=" + psi) + "#" + id;
  }

  // Load a new face for the tile off screen, then swap it in with one DOM update.
  function refill(tile) {
    tile.next = null;
    const choice = pool.pick(taken());
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
    const el = document.createElement("div");
    el.className = "row";
    const tiles = [];
    for (let c = 0; c < columns; c++) {
      const a = document.createElement("a");
      a.className = "tile";
      a.hidden = true;
      el.append(a);
      tiles.push({ el: a, id: null, next: null });
    }
    return { el, tiles };
  }

  // Columns from the width, rows to fill the height (moving: plus the rows scrolling in
  // and one row ahead). A pool smaller than the grid leaves the last tiles empty.
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

  // Every tile at once, each face new and distinct (start and Refresh): load all, then one update.
  function fillAll() {
    const mine = ++generation;
    const tiles = rows.flatMap((r) => r.tiles);
    // New faces everywhere, unless the pool is too small to avoid the ones shown now.
    const avoid = pool.total >= 2 * tiles.length ? taken() : new Set();
    const chosen = new Set(), picks = [];
    for (const t of tiles) {
      const choice = pool.pick(new Set([...avoid, ...chosen]));
      picks.push(choice);
      if (choice) chosen.add(choice.id);
    }
    tiles.forEach((t, i) => { t.next = picks[i] ? picks[i].id : null; });
    Promise.all(picks.map((c) => (c ? B.loadImage(c.id, 1024).catch(() => null) : null))).then((imgs) => {
      if (mine !== generation) return;
      tiles.forEach((t, i) => {
        t.next = null;
        t.id = imgs[i] ? picks[i].id : null;
        t.el.hidden = !imgs[i];
        if (imgs[i]) { t.el.replaceChildren(imgs[i]); t.el.href = tileHref(picks[i].id); }
      });
      restart();
    });
  }

  // Still grid: one tile per tick, in a fresh shuffled order each round, each tile about
  // every refresh_seconds; the next tick is scheduled only after this swap is on screen.
  function tick() {
    if (order.length === 0) order = rows.flatMap((r) => r.tiles).sort(() => Math.random() - 0.5);
    const tile = order.pop();
    const mine = generation;
    refill(tile).then(() => { if (mine === generation) scheduleTick(); });
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
      // Off screen now; a tile no spare ID could refill is emptied rather than shown twice.
      top.tiles.forEach((t) => { t.id = null; refill(t).then((ok) => { if (!ok && t.id === null) t.el.hidden = true; }); });
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
