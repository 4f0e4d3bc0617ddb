'use strict';
// attnframes view: decodes the embedded arrays and draws the overview, one head, the top-k of
// a query, the text coloured by received attention, and the headstats table.
(() => {
  const $ = (id) => document.getElementById(id);
  const META = JSON.parse($('meta').textContent);
  const CM = META.codeMax;
  const el = (tag, props = {}, text) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === 'class') e.className = v; else if (k in e) e[k] = v; else e.setAttribute(k, v);
    }
    if (text !== undefined) e.textContent = text;
    return e;
  };

  // ---------------------------------------------------------------- decoding
  function fromBase64(s) {
    s = s.trim();
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(s);
    const bin = atob(s);
    const u = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
    return u;
  }
  async function inflate(id) {
    const bytes = fromBase64($('b' + id).textContent);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate'));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  const blobs = new Map();
  const blob = (id) => {
    if (!blobs.has(id)) blobs.set(id, inflate(id));
    return blobs.get(id);
  };
  // Byte planes back to little-endian values: plane b holds byte b of every value.
  function unshuffle(raw, width, n, offset) {
    const out = new Uint8Array(n * width);
    for (let b = 0; b < width; b++) {
      const plane = raw.subarray(offset + b * n, offset + (b + 1) * n);
      for (let i = 0; i < n; i++) out[i * width + b] = plane[i];
    }
    return out;
  }
  function f16(bits) {
    const s = bits & 0x8000 ? -1 : 1, e = (bits >> 10) & 0x1f, m = bits & 0x3ff;
    if (e === 0) return s * m * 2 ** -24;
    if (e === 31) return m ? NaN : s * Infinity;
    return s * (1 + m / 1024) * 2 ** (e - 15);
  }
  const colormap = (() => {
    const raw = fromBase64(META.colormap);
    const out = [];
    for (let i = 0; i < 256; i++) out.push([raw[3 * i], raw[3 * i + 1], raw[3 * i + 2]]);
    return out;
  })();
  const rgb = (t) => colormap[Math.max(0, Math.min(255, Math.round((Number.isFinite(t) ? t : 0) * 255)))];

  // ---------------------------------------------------------------- state
  const state = {
    b: 0, open: -1, query: -1, pinned: false,
    scale: 'sqrt', norm: 'head', frameBy: '',
    view: { s: 1, ox: 0, oy: 0 },
    detail: null, topk: null, received: null,
    textLayers: new Set(), textHeads: new Set(),
  };
  const batch = () => META.batches[state.b];
  const label = (b, p) => (b.tokens ? b.tokens[p] : String(p));
  function indexOf(list) {
    const m = new Map();
    list.forEach((p, i) => m.set(p, i));
    return m;
  }
  let keyIndex = new Map(), queryIndex = new Map();

  // Code → colour, as packed RGBA words for ImageData.
  function lut(head) {
    const b = batch();
    const vmax = state.norm === 'shared' ? Math.max(...b.heads.map((h) => h.scale)) : head.scale;
    const words = new Uint32Array(CM + 1);
    for (let c = 0; c <= CM; c++) {
      const v = (c / CM) ** 2 * head.scale;
      let t = vmax > 0 ? v / vmax : 0;
      if (state.scale === 'sqrt') t = Math.sqrt(t);
      const [r, g, bl] = rgb(t);
      words[c] = (255 << 24) | (bl << 16) | (g << 8) | r;
    }
    return words;
  }
  function paint(canvas, codes, rows, cols, offset, words) {
    canvas.width = cols;
    canvas.height = rows;
    if (!rows || !cols) return; // a batch row without valid positions
    const ctx = canvas.getContext('2d');
    const img = ctx.createImageData(cols, rows);
    const px = new Uint32Array(img.data.buffer);
    for (let i = 0; i < rows * cols; i++) px[i] = words[codes[offset + i]];
    ctx.putImageData(img, 0, 0);
  }

  // ---------------------------------------------------------------- overview
  let thumbs = [];
  async function drawGrid() {
    const b = batch();
    const codes = await blob(b.thumb.blob);
    const layers = [...new Set(b.heads.map((h) => h.layer))];
    const heads = [...new Set(b.heads.map((h) => h.head))];
    const grid = $('grid');
    grid.textContent = '';
    grid.style.gridTemplateColumns = `auto repeat(${heads.length}, minmax(0, 64px))`;
    grid.append(el('span', { class: 'lab' }, ''));
    for (const h of heads) grid.append(el('span', { class: 'lab' }, `H${h}`));
    thumbs = [];
    const n = b.thumb.rows * b.thumb.cols;
    for (const l of layers) {
      grid.append(el('span', { class: 'lab' }, `L${l}`));
      for (const h of heads) {
        const i = b.heads.findIndex((x) => x.layer === l && x.head === h);
        if (i < 0) { grid.append(el('span')); continue; }
        const c = el('canvas', { class: 'thumb', title: `layer ${l}, head ${h}` });
        c.dataset.layer = l;
        c.dataset.head = h;
        c.dataset.index = i;
        paint(c, codes, b.thumb.rows, b.thumb.cols, i * n, lut(b.heads[i]));
        c.addEventListener('click', () => openHead(i));
        c.addEventListener('mouseenter', () => hotRow(i, true));
        c.addEventListener('mouseleave', () => hotRow(i, false));
        thumbs[i] = c;
        grid.append(c);
      }
    }
    colourFrames();
  }
  function statRows() {
    const cols = META.stats.columns, vals = META.stats.values;
    const bi = cols.indexOf('batch'), li = cols.indexOf('layer'), hi = cols.indexOf('head');
    const b = batch();
    const rows = [];
    const n = vals.length ? vals[0].length : 0;
    for (let r = 0; r < n; r++) {
      if (vals[bi][r] !== b.batch) continue;
      const i = b.heads.findIndex((x) => x.layer === vals[li][r] && x.head === vals[hi][r]);
      if (i >= 0) rows.push({ r, i });
    }
    return rows;
  }
  function colourFrames() {
    const col = META.stats.columns.indexOf(state.frameBy);
    const legend = $('frame-legend');
    legend.textContent = '';
    for (const t of thumbs) if (t) t.style.borderColor = '';
    if (col < 0) return;
    const rows = statRows();
    const num = (v) => (typeof v === 'boolean' ? +v : v);
    const vs = rows.map(({ r }) => num(META.stats.values[col][r])).filter((v) => Number.isFinite(v));
    const lo = Math.min(...vs), hi = Math.max(...vs);
    for (const { r, i } of rows) {
      const v = num(META.stats.values[col][r]);
      const t = Number.isFinite(v) && hi > lo ? (v - lo) / (hi - lo) : 0;
      const [cr, cg, cb] = rgb(t);
      if (thumbs[i]) {
        thumbs[i].style.borderColor = Number.isFinite(v) ? `rgb(${cr},${cg},${cb})` : '#ddd';
        thumbs[i].title = `layer ${batch().heads[i].layer}, head ${batch().heads[i].head}: ${state.frameBy} = ${fmt(v)}`;
      }
    }
    const bar = el('span', { class: 'bar' });
    bar.style.background = `linear-gradient(to right, ${[0, 0.25, 0.5, 0.75, 1].map((t) => `rgb(${rgb(t).join(',')})`).join(',')})`;
    legend.append(el('span', {}, `${state.frameBy}: ${fmt(lo)}`), bar, el('span', {}, fmt(hi)));
  }
  const fmt = (v) => (v === null || v === undefined ? '–' : typeof v === 'boolean' ? String(v) : Number.isInteger(v) ? String(v) : Number(v).toPrecision(4));

  // ---------------------------------------------------------------- one head
  const canvas = $('head');
  const ML = 84, MT = 84, PAD = 6;
  function setupCanvas() {
    const dpr = window.devicePixelRatio || 1;
    canvas.width = 720 * dpr;
    canvas.height = 720 * dpr;
  }
  const plotW = () => 720 - ML - PAD, plotH = () => 720 - MT - PAD;
  function fit() {
    const b = batch();
    const s = Math.min(plotW() / b.keys.length, plotH() / b.queries.length);
    state.view = { s, ox: 0, oy: 0 };
  }
  async function openHead(i) {
    const t0 = performance.now();
    const b = batch();
    const h = b.heads[i];
    state.open = i;
    canvas.dataset.open = '';
    const [codes, tk] = await Promise.all([blob(h.detail.blob), blob(h.topk)]);
    if (state.open !== i || batch() !== b) return;
    const off = document.createElement('canvas');
    paint(off, codes, h.detail.rows, h.detail.cols, 0, lut(h));
    state.detail = { codes, rows: h.detail.rows, cols: h.detail.cols, image: off };
    state.topk = decodeTopk(tk, b);
    for (const t of thumbs) if (t) t.classList.toggle('open', +t.dataset.index === i);
    for (const tr of $('stats').querySelectorAll('tr[data-index]')) tr.classList.toggle('open', +tr.dataset.index === i);
    $('head-title').innerHTML = '';
    $('head-title').append(`Layer ${h.layer}, head ${h.head}`, el('small', {}, ` batch row ${b.batch} · ${b.queries.length} × ${b.keys.length}` +
      (h.detail.rows < b.queries.length || h.detail.cols < b.keys.length ? ` · max-pooled to ${h.detail.rows} × ${h.detail.cols}` : '')));
    if (state.query >= b.queries.length) state.query = -1;
    fit();
    draw();
    drawColorbar(h);
    showTopk();
    canvas.dataset.open = `${h.layer}-${h.head}`;
    requestAnimationFrame(() => {
      window.afView.lastOpenMs = performance.now() - t0;
      performance.mark('af-head-open');
    });
  }
  // encode_topk's layout: [mode][4 planes of positions][2 planes of f16 score words].
  function decodeTopk(all, b) {
    const nq = b.queries.length, per = b.per, n = nq * per;
    const mode = all[0], raw = all.subarray(1);
    const positions = new Uint32Array(n), scores = new Float32Array(n);
    for (let qi = 0; qi < nq; qi++) {
      const q = b.queries[qi];
      let prev = 0;
      for (let j = 0; j < per; j++) {
        const e = qi * per + j;
        const word = (raw[e] | (raw[n + e] << 8) | (raw[2 * n + e] << 16) | (raw[3 * n + e] << 24)) >>> 0;
        // Mode 1: zigzag-coded position − query.
        positions[e] = mode === 0 ? word : (q + ((word >>> 1) ^ -(word & 1))) >>> 0;
        const w = raw[4 * n + e] | (raw[5 * n + e] << 8);
        const bits = j === 0 ? w : (prev - w) & 0xffff;
        scores[e] = f16(bits);
        prev = bits;
      }
    }
    return { positions, scores, per };
  }
  function draw() {
    const ctx = canvas.getContext('2d');
    const dpr = canvas.width / 720;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, 720, 720);
    if (!state.detail) return;
    const b = batch(), { s, ox, oy } = state.view;
    const nq = b.queries.length, nk = b.keys.length;
    ctx.save();
    ctx.beginPath();
    ctx.rect(ML, MT, plotW(), plotH());
    ctx.clip();
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(state.detail.image, ML - ox * s, MT - oy * s, nk * s, nq * s);
    if (state.query >= 0 && state.topk) {
      const qi = state.query, y = MT + (qi - oy) * s;
      ctx.fillStyle = 'rgba(255,255,255,0.18)';
      ctx.fillRect(ML, y, plotW(), Math.max(s, 1));
      ctx.strokeStyle = '#e91e63';
      ctx.lineWidth = 2;
      const m = Math.max(s, 5);
      for (let j = 0; j < state.topk.per; j++) {
        const p = state.topk.positions[qi * state.topk.per + j];
        const kj = keyIndex.get(p);
        if (kj === undefined) continue;
        const x = ML + (kj - ox) * s + s / 2, yc = y + s / 2;
        ctx.strokeRect(x - m / 2, yc - m / 2, m, m);
      }
    }
    ctx.restore();
    // Token labels once a cell is tall enough to read them.
    ctx.fillStyle = '#333';
    ctx.font = `${Math.min(12, Math.floor(s * 0.8))}px system-ui, sans-serif`;
    if (s >= 9) {
      ctx.textAlign = 'right';
      ctx.textBaseline = 'middle';
      const i0 = Math.max(0, Math.floor(oy)), i1 = Math.min(nq, Math.ceil(oy + plotH() / s));
      for (let i = i0; i < i1; i++) ctx.fillText(clip(label(b, b.queries[i])), ML - 4, MT + (i - oy + 0.5) * s);
      ctx.textAlign = 'left';
      const j0 = Math.max(0, Math.floor(ox)), j1 = Math.min(nk, Math.ceil(ox + plotW() / s));
      for (let j = j0; j < j1; j++) {
        ctx.save();
        ctx.translate(ML + (j - ox + 0.5) * s, MT - 4);
        ctx.rotate(-Math.PI / 2);
        ctx.fillText(clip(label(b, b.keys[j])), 0, 0);
        ctx.restore();
      }
    } else {
      ctx.font = '11px system-ui, sans-serif';
      ctx.textAlign = 'left';
      ctx.textBaseline = 'bottom';
      ctx.fillText(`keys ${b.keys[Math.max(0, Math.floor(ox))]}…  (zoom in for tokens)`, ML, MT - 4);
      ctx.save();
      ctx.translate(ML - 4, MT + plotH());
      ctx.rotate(-Math.PI / 2);
      ctx.fillText('queries', 0, 0);
      ctx.restore();
    }
  }
  const clip = (t) => (t.length > 12 ? t.slice(0, 11) + '…' : t);
  function drawColorbar(h) {
    const c = $('colorbar');
    const dpr = window.devicePixelRatio || 1;
    c.width = 70 * dpr;
    c.height = 720 * dpr;
    const ctx = c.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const b = batch();
    const vmax = state.norm === 'shared' ? Math.max(...b.heads.map((x) => x.scale)) : h.scale;
    const top = MT, height = plotH();
    for (let y = 0; y < height; y++) {
      const t = 1 - y / (height - 1);
      ctx.fillStyle = `rgb(${rgb(t).join(',')})`;
      ctx.fillRect(4, top + y, 16, 1);
    }
    ctx.fillStyle = '#333';
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    for (const t of [0, 0.25, 0.5, 0.75, 1]) {
      const v = state.scale === 'sqrt' ? t * t * vmax : t * vmax;
      ctx.fillText(v.toPrecision(2), 24, top + (1 - t) * (height - 1));
    }
    ctx.fillText(state.scale, 4, top - 10);
  }
  function cellAt(ev) {
    const r = canvas.getBoundingClientRect();
    const x = ((ev.clientX - r.left) * 720) / r.width, y = ((ev.clientY - r.top) * 720) / r.height;
    const { s, ox, oy } = state.view;
    return { x, y, j: Math.floor(ox + (x - ML) / s), i: Math.floor(oy + (y - MT) / s) };
  }
  let drag = null;
  canvas.addEventListener('pointerdown', (ev) => {
    drag = { x: ev.clientX, y: ev.clientY, ox: state.view.ox, oy: state.view.oy, moved: false };
    canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener('pointerup', (ev) => {
    if (drag && !drag.moved) {
      const { i } = cellAt(ev);
      if (i >= 0 && i < batch().queries.length) {
        state.pinned = !(state.pinned && state.query === i);
        setQuery(i);
      }
    }
    drag = null;
  });
  canvas.addEventListener('pointermove', (ev) => {
    if (!state.detail) return;
    if (drag) {
      const r = canvas.getBoundingClientRect(), k = 720 / r.width;
      const dx = (ev.clientX - drag.x) * k, dy = (ev.clientY - drag.y) * k;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      if (drag.moved) {
        state.view.ox = drag.ox - dx / state.view.s;
        state.view.oy = drag.oy - dy / state.view.s;
        draw();
      }
      return;
    }
    const { i, j } = cellAt(ev);
    const b = batch();
    if (i < 0 || j < 0 || i >= b.queries.length || j >= b.keys.length) return;
    const d = state.detail, h = b.heads[state.open];
    const r = Math.floor((i * d.rows) / b.queries.length), c = Math.floor((j * d.cols) / b.keys.length);
    const v = (d.codes[r * d.cols + c] / CM) ** 2 * h.scale;
    const pooled = d.rows < b.queries.length || d.cols < b.keys.length;
    $('cell-info').textContent = `${label(b, b.queries[i])} (${b.queries[i]}) → ${label(b, b.keys[j])} (${b.keys[j]}) ${pooled ? 'cell max' : ''} ≈ ${v.toPrecision(3)}`;
    if (!state.pinned) setQuery(i);
  });
  canvas.addEventListener('wheel', (ev) => {
    if (!state.detail) return;
    ev.preventDefault();
    const { x, y } = cellAt(ev);
    zoomAt(ev.deltaY < 0 ? 1.25 : 0.8, x, y);
  }, { passive: false });
  function zoomAt(f, x, y) {
    const v = state.view;
    const tx = v.ox + (x - ML) / v.s, ty = v.oy + (y - MT) / v.s;
    v.s = Math.min(60, Math.max(0.05, v.s * f));
    v.ox = tx - (x - ML) / v.s;
    v.oy = ty - (y - MT) / v.s;
    draw();
  }
  $('zoom-in').addEventListener('click', () => zoomAt(1.6, ML + plotW() / 2, MT + plotH() / 2));
  $('zoom-out').addEventListener('click', () => zoomAt(1 / 1.6, ML + plotW() / 2, MT + plotH() / 2));
  $('zoom-reset').addEventListener('click', () => { fit(); draw(); });

  // ---------------------------------------------------------------- top-k
  function setQuery(i) {
    state.query = i;
    draw();
    showTopk();
  }
  function showTopk() {
    const list = $('topk');
    list.textContent = '';
    for (const s of document.querySelectorAll('#text .tok.hl, #text .tok.query')) s.classList.remove('hl', 'query');
    const b = batch();
    if (state.query < 0 || !state.topk || state.open < 0) {
      $('topk-query').textContent = 'hover a query row or token';
      list.dataset.query = '';
      return;
    }
    const q = b.queries[state.query];
    const h = b.heads[state.open];
    $('topk-query').textContent = `query ${label(b, q)} (${q}), layer ${h.layer} head ${h.head}${state.pinned ? ' · pinned' : ''}`;
    const { positions, scores, per } = state.topk;
    for (let j = 0; j < per; j++) {
      const p = positions[state.query * per + j], sc = scores[state.query * per + j];
      const li = el('li');
      li.dataset.position = p;
      li.dataset.score = sc;
      li.append(el('span', { class: 'tok' }, label(b, p)), ' ', el('span', { class: 'pos' }, `@${p}`), ' ', el('span', { class: 'score' }, sc.toPrecision(4)));
      list.append(li);
      const span = textSpans.get(p);
      if (span) span.classList.add('hl');
    }
    const qs = textSpans.get(q);
    if (qs) qs.classList.add('query');
    list.dataset.query = q;
  }

  // ---------------------------------------------------------------- text
  let textSpans = new Map();
  function buildText() {
    const b = batch();
    const p = $('text');
    p.textContent = '';
    textSpans = new Map();
    const words = b.words || b.keys.map((k) => [[k, String(k)]]);
    words.forEach((w, wi) => {
      if (wi > 0) p.append(' ');
      const word = el('span', { class: 'word' });
      for (const [pos, text] of w) {
        const s = el('span', { class: 'tok' }, text);
        s.dataset.pos = pos;
        s.addEventListener('mouseenter', () => {
          const qi = queryIndex.get(pos);
          if (qi !== undefined && !state.pinned) setQuery(qi);
        });
        s.addEventListener('click', () => {
          const qi = queryIndex.get(pos);
          if (qi === undefined) return;
          state.pinned = !(state.pinned && state.query === qi);
          setQuery(qi);
        });
        textSpans.set(pos, s);
        word.append(s);
      }
      p.append(word);
    });
    const mk = (box, values, set, prefix) => {
      box.textContent = '';
      for (const v of values) {
        const cb = el('input', { type: 'checkbox', checked: set.has(v) });
        cb.dataset.value = v;
        cb.addEventListener('change', () => { cb.checked ? set.add(v) : set.delete(v); colourText(); });
        const lab = el('label');
        lab.append(cb, `${prefix}${v}`);
        box.append(lab);
      }
    };
    const layers = [...new Set(b.heads.map((h) => h.layer))], heads = [...new Set(b.heads.map((h) => h.head))];
    if (!state.textLayers.size) layers.forEach((l) => state.textLayers.add(l));
    if (!state.textHeads.size) heads.forEach((h) => state.textHeads.add(h));
    mk($('text-layers'), layers, state.textLayers, 'L');
    mk($('text-heads'), heads, state.textHeads, 'H');
  }
  // Same weights as `plot --text`: received attention summed over the selected heads, then
  // min-max normalised over the row's valid keys (NaN counts as 0).
  function textWeights() {
    const b = batch(), nk = b.keys.length, rec = state.received;
    const sum = new Float64Array(nk);
    b.heads.forEach((h, i) => {
      if (!state.textLayers.has(h.layer) || !state.textHeads.has(h.head)) return;
      for (let j = 0; j < nk; j++) sum[j] += rec[i * nk + j];
    });
    let lo = Infinity, hi = -Infinity;
    for (const v of sum) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    return Array.from(sum, (v) => (hi > lo && Number.isFinite(v) ? (v - lo) / (hi - lo) : 0));
  }
  function colourText() {
    const b = batch();
    const w = textWeights();
    b.keys.forEach((k, j) => {
      const s = textSpans.get(k);
      if (!s) return;
      s.dataset.w = w[j];
      s.title = `${label(b, k)} (${k}): ${w[j].toFixed(4)}`;
      s.style.backgroundColor = `rgba(255, 0, 0, ${w[j].toFixed(3)})`;
    });
    for (const cb of $('text-layers').querySelectorAll('input')) cb.checked = state.textLayers.has(+cb.dataset.value);
    for (const cb of $('text-heads').querySelectorAll('input')) cb.checked = state.textHeads.has(+cb.dataset.value);
  }
  $('text-all').addEventListener('click', () => {
    batch().heads.forEach((h) => { state.textLayers.add(h.layer); state.textHeads.add(h.head); });
    colourText();
  });
  $('text-open').addEventListener('click', () => {
    if (state.open < 0) return;
    const h = batch().heads[state.open];
    state.textLayers = new Set([h.layer]);
    state.textHeads = new Set([h.head]);
    buildText();
    colourText();
  });

  // ---------------------------------------------------------------- headstats
  let sortBy = { col: -1, desc: false };
  function buildStats() {
    const table = $('stats');
    table.textContent = '';
    const cols = META.stats.columns;
    const head = el('tr');
    cols.forEach((c, ci) => {
      const th = el('th', {}, c);
      if (ci === sortBy.col) th.className = sortBy.desc ? 'sorted-desc' : 'sorted-asc';
      th.addEventListener('click', () => {
        sortBy = { col: ci, desc: sortBy.col === ci ? !sortBy.desc : true };
        buildStats();
      });
      head.append(th);
    });
    const thead = el('thead');
    thead.append(head);
    table.append(thead);
    const body = el('tbody');
    const rows = statRows();
    if (sortBy.col >= 0) {
      const v = (r) => {
        const x = META.stats.values[sortBy.col][r.r];
        return x === null ? NaN : +x;
      };
      rows.sort((a, b) => {
        const x = v(a), y = v(b);
        if (Number.isNaN(x) || Number.isNaN(y)) return Number.isNaN(x) - Number.isNaN(y);
        return sortBy.desc ? y - x : x - y;
      });
    }
    for (const { r, i } of rows) {
      const tr = el('tr');
      tr.dataset.index = i;
      if (i === state.open) tr.className = 'open';
      for (let c = 0; c < cols.length; c++) tr.append(el('td', {}, fmt(META.stats.values[c][r])));
      tr.addEventListener('click', () => openHead(i));
      tr.addEventListener('mouseenter', () => thumbs[i] && thumbs[i].classList.add('hot'));
      tr.addEventListener('mouseleave', () => thumbs[i] && thumbs[i].classList.remove('hot'));
      body.append(tr);
    }
    table.append(body);
  }
  function hotRow(i, on) {
    const tr = $('stats').querySelector(`tr[data-index="${i}"]`);
    if (tr) tr.style.outline = on ? '2px dashed #ff9800' : '';
  }

  // ---------------------------------------------------------------- wiring
  async function showBatch(bi) {
    const keep = state.open >= 0 ? batch().heads[state.open] : null;
    state.b = bi;
    state.open = -1;
    state.query = -1;
    state.pinned = false;
    state.detail = null;
    state.topk = null;
    const b = batch();
    keyIndex = indexOf(b.keys);
    queryIndex = indexOf(b.queries);
    const raw = await blob(b.received);
    state.received = new Float32Array(unshuffle(raw, 4, raw.length / 4, 0).buffer);
    await drawGrid();
    buildText();
    colourText();
    buildStats();
    draw();
    showTopk();
    if (keep) {
      const i = b.heads.findIndex((h) => h.layer === keep.layer && h.head === keep.head);
      if (i >= 0) await openHead(i);
    }
  }
  async function main() {
    window.afView = { firstPaintMs: null, lastOpenMs: null, openHead };
    $('title').textContent = META.title;
    $('source').textContent = META.source;
    document.title = META.title;
    META.batches.forEach((b, i) => $('batch').append(el('option', { value: i }, `row ${b.batch}`)));
    $('frame-by').append(el('option', { value: '' }, 'none'));
    for (const c of META.stats.columns) {
      if (['batch', 'layer', 'head'].includes(c)) continue;
      $('frame-by').append(el('option', { value: c }, c));
    }
    $('batch').addEventListener('change', (ev) => showBatch(+ev.target.value));
    $('frame-by').addEventListener('change', (ev) => { state.frameBy = ev.target.value; colourFrames(); });
    const repaint = async () => {
      const open = state.open;
      await drawGrid();
      if (open >= 0) await openHead(open);
    };
    $('scale').addEventListener('change', (ev) => { state.scale = ev.target.value; repaint(); });
    $('norm').addEventListener('change', (ev) => { state.norm = ev.target.value; repaint(); });
    setupCanvas();
    if (!META.batches.length) {
      $('status').textContent = 'nothing selected';
      return;
    }
    await showBatch(0);
    requestAnimationFrame(() => {
      window.afView.firstPaintMs = performance.now();
      performance.mark('af-first-paint');
      $('status').textContent = `${META.batches.length} batch row(s), ${batch().heads.length} heads, ${batch().keys.length} keys, k = ${META.k}`;
      document.body.dataset.ready = '1';
    });
  }
  main().catch((e) => {
    $('status').textContent = `error: ${e}`;
    console.error(e);
  });
})();
