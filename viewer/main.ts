import { Trace, type TraceRun } from '../src/trace/read.js';

/**
 * The trace viewer: the text shaded by how many (layer, KV head) pairs hold each token at the chosen
 * step, a layer × head grid of what each head holds, a step slider, and a second cache beside the
 * first with the chosen head's differences outlined. Everything comes from the one trace file the
 * server hands out at ./trace; nothing else is fetched.
 */

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const runA = $<HTMLSelectElement>('run-a');
const runB = $<HTMLSelectElement>('run-b');
const stepInput = $<HTMLInputElement>('step');
const layerSelect = $<HTMLSelectElement>('layer');
const headSelect = $<HTMLSelectElement>('head');
const playButton = $<HTMLButtonElement>('play');
const tip = $<HTMLDivElement>('tip');

interface Column {
  run: TraceRun;
  spans: HTMLSpanElement[];
  cells: { td: HTMLTableCellElement; count: HTMLSpanElement; delta: HTMLSpanElement; canvas: HTMLCanvasElement }[];
  meta: HTMLDivElement;
  /** Heads holding each position at the shown step, and the chosen head's held set. */
  counts: Uint16Array;
  chosen: Set<number>;
}

let trace: Trace;
let columns: Column[] = [];
let timer: number | undefined;

async function start(): Promise<void> {
  const response = await fetch('./trace');
  if (!response.ok) throw new Error(`the server has no trace (${response.status})`);
  trace = Trace.parse(await response.text());
  const { header, runs } = trace;
  if (runs.length === 0) throw new Error('the trace holds no run');
  $('about').textContent = `· ${header.model} · ${header.layers} layers × ${header.kvHeads} KV heads · ${trace.tokens?.ids.length ?? '?'} tokens`;
  $('head-count').textContent = String(trace.heads);
  runs.forEach((run, i) => {
    runA.add(new Option(run.spec, String(i)));
    runB.add(new Option(run.spec, String(i)));
  });
  if (runs.length > 1) runB.value = '1';
  for (let l = 0; l < header.layers; l++) layerSelect.add(new Option(String(l), String(l)));
  for (let h = 0; h < header.kvHeads; h++) headSelect.add(new Option(String(h), String(h)));
  if (!trace.complete) status('The trace is incomplete (its run was interrupted or is still writing); showing what is there.');
  runA.onchange = runB.onchange = () => layout();
  stepInput.oninput = layerSelect.onchange = headSelect.onchange = () => show();
  playButton.onclick = () => play();
  layout();
  document.body.dataset.ready = String(performance.now());
}

function status(text: string, problem = false): void {
  const p = $('status');
  p.textContent = text;
  p.classList.toggle('problem', problem);
}

/** Builds one column per chosen run (grid + text); `show` fills them for the chosen step. */
function layout(): void {
  const chosen = [Number(runA.value), ...(runB.value === '' || runB.value === runA.value ? [] : [Number(runB.value)])];
  const steps = Math.min(...chosen.map((i) => trace.runs[i]!.steps.length));
  stepInput.max = String(Math.max(0, steps - 1));
  stepInput.value = String(Math.min(Number(stepInput.value), steps - 1));
  const main = $('runs');
  main.replaceChildren();
  columns = chosen.map((i) => column(trace.runs[i]!, main));
  show();
}

function column(run: TraceRun, parent: HTMLElement): Column {
  const section = document.createElement('section');
  section.className = 'run';
  section.dataset.run = String(run.info.run);
  const title = document.createElement('h2');
  title.textContent = run.spec;
  const meta = document.createElement('div');
  meta.className = 'meta';
  const grid = document.createElement('table');
  grid.className = 'grid';
  const head = grid.createTHead().insertRow();
  head.insertCell().outerHTML = '<th>layer</th>';
  for (let h = 0; h < trace.header.kvHeads; h++) head.insertCell().outerHTML = `<th>KV head ${h}</th>`;
  const cells: Column['cells'] = [];
  const body = grid.createTBody();
  for (let l = 0; l < trace.header.layers; l++) {
    const row = body.insertRow();
    row.insertCell().outerHTML = `<th>${l}</th>`;
    for (let h = 0; h < trace.header.kvHeads; h++) {
      const td = row.insertCell();
      td.dataset.layer = String(l);
      td.dataset.head = String(h);
      td.title = `layer ${l}, KV head ${h}: positions held (left = first token); tokens held, and how many the other cache does not hold`;
      const canvas = document.createElement('canvas');
      const count = document.createElement('span');
      count.className = 'count';
      const delta = document.createElement('span');
      delta.className = 'delta';
      td.append(canvas, count, delta);
      td.onclick = () => {
        layerSelect.value = String(l);
        headSelect.value = String(h);
        show();
      };
      cells.push({ td, count, delta, canvas });
    }
  }
  const text = document.createElement('div');
  text.className = 'text';
  const pieces = trace.tokens?.pieces ?? [];
  const prompt = trace.tokens?.prompt ?? pieces.length;
  const spans = pieces.map((piece, p) => {
    const span = document.createElement('span');
    span.textContent = piece;
    span.dataset.pos = String(p);
    if (p >= prompt) span.classList.add('generated');
    return span;
  });
  text.append(...spans);
  text.onmousemove = (e) => hover(e, run);
  text.onmouseleave = () => (tip.hidden = true);
  section.append(title, meta, grid, text);
  parent.append(section);
  return { run, spans, cells, meta, counts: new Uint16Array(spans.length), chosen: new Set() };
}

function chosenHead(): number {
  return Number(layerSelect.value) * trace.header.kvHeads + Number(headSelect.value);
}

/** Fills every column for the chosen step, layer and head. */
function show(): void {
  const step = Number(stepInput.value);
  const head = chosenHead();
  const record = columns[0]!.run.steps[step]!;
  $('step-label').textContent = `${step + 1} of ${Number(stepInput.max) + 1} · ${record.tokens} tokens fed`;
  for (const c of columns) {
    const held = c.run.held(step);
    c.counts = new Uint16Array(c.spans.length);
    for (const positions of held) for (const p of positions) c.counts[p]!++;
    c.chosen = new Set(held[head]);
    c.meta.textContent = `${c.run.info.score ? `score: ${c.run.info.score}` : 'no score'}${c.run.info.errors ? ' · key/value errors' : ''}` +
      ` · ${c.run.end?.truncated ? 'truncated by the size bound · ' : ''}held by layer ${layerSelect.value} head ${headSelect.value}: ${held[head]!.length}`;
    c.cells.forEach((cell, i) => {
      cell.count.textContent = String(held[i]!.length);
      cell.td.classList.toggle('chosen', i === head);
      drawStrip(cell.canvas, held[i]!, record.tokens);
    });
  }
  const [a, b] = columns;
  for (const c of columns) {
    const other = c === a ? b : a;
    const otherHeld = other?.run.held(step);
    c.cells.forEach((cell, i) => {
      if (!otherHeld) return void (cell.delta.textContent = '');
      const mine = new Set(c.run.held(step)[i]);
      const theirs = otherHeld[i]!;
      let common = 0;
      for (const p of theirs) if (mine.has(p)) common++;
      cell.delta.textContent = mine.size - common ? `${mine.size - common} only here` : '';
    });
    c.spans.forEach((span, p) => {
      const count = c.counts[p]!;
      span.classList.toggle('future', p >= record.tokens);
      span.classList.toggle('gone', count === 0 && p < record.tokens);
      span.classList.toggle('sel', c.chosen.has(p));
      span.classList.toggle('only', other !== undefined && c.chosen.has(p) && !other.chosen.has(p));
      span.dataset.held = String(count);
      span.style.backgroundColor = count ? `rgba(var(--held), ${(0.1 + (0.6 * count) / trace.heads).toFixed(3)})` : '';
    });
  }
}

/** One pixel column per stretch of positions, dark where the head holds tokens. */
function drawStrip(canvas: HTMLCanvasElement, held: Int32Array, tokens: number): void {
  const width = 140;
  const height = 14;
  if (canvas.width !== width) {
    canvas.width = width;
    canvas.height = height;
  }
  const ctx = canvas.getContext('2d')!;
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = '#eaeef2';
  ctx.fillRect(0, 0, width, height);
  const perPixel = new Float32Array(width);
  const scale = width / Math.max(1, tokens);
  for (const p of held) perPixel[Math.min(width - 1, Math.floor(p * scale))]! += 1;
  const full = Math.max(1, tokens / width);
  for (let x = 0; x < width; x++) {
    if (!perPixel[x]) continue;
    ctx.fillStyle = `rgba(37, 99, 235, ${Math.min(1, 0.25 + perPixel[x]! / full).toFixed(2)})`;
    ctx.fillRect(x, 0, 1, height);
  }
}

function hover(e: MouseEvent, run: TraceRun): void {
  const target = e.target as HTMLElement;
  const pos = target.dataset.pos;
  if (pos === undefined) return void (tip.hidden = true);
  const p = Number(pos);
  const step = Number(stepInput.value);
  const lines = [`position ${p}: ${JSON.stringify(target.textContent)}`, `held by ${target.dataset.held} of ${trace.heads} heads`];
  const head = chosenHead();
  const { positions, scores } = run.head(step, head);
  const slot = positions.indexOf(p);
  const where = `layer ${layerSelect.value} head ${headSelect.value}`;
  if (slot < 0) lines.push(`${where}: not held`);
  else {
    if (scores) lines.push(`${where} ${run.info.score}: ${scores[slot]}`);
    const errors = run.errors(step, head, p);
    if (errors) lines.push(`key error ${(100 * errors.key).toFixed(2)}% · value error ${(100 * errors.value).toFixed(2)}%`);
  }
  tip.textContent = lines.join('\n');
  tip.hidden = false;
  tip.style.left = `${Math.min(e.clientX + 12, window.innerWidth - 380)}px`;
  const below = e.clientY + 14;
  tip.style.top = `${below + tip.offsetHeight > window.innerHeight ? e.clientY - tip.offsetHeight - 8 : below}px`;
}

function play(): void {
  if (timer !== undefined) {
    clearInterval(timer);
    timer = undefined;
    playButton.textContent = '▶';
    return;
  }
  playButton.textContent = '⏸';
  if (stepInput.value === stepInput.max) stepInput.value = '0';
  timer = window.setInterval(() => {
    if (stepInput.value === stepInput.max) return play();
    stepInput.value = String(Number(stepInput.value) + 1);
    show();
  }, 250);
}

start().catch((e: Error) => status(e.message, true));
