import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeReport } from '../../src/cli/report.js';
import { budgetFraction, family, heat, lineTags, seriesStyles } from '../../src/eval/plots.js';
import { buildSections, renderHtml, renderMarkdown } from '../../src/eval/report.js';
import { cellMetric, readGrid } from '../../src/eval/retrieval.js';
import { fixtureRows } from './report-fixture.js';

describe('report plots', () => {
  it('names families and budgets from cache specs', () => {
    expect(family('h2o(budget=0.2)+fp32')).toBe('h2o+fp32');
    expect(family('h2o(budget=0.2)')).toBe('h2o');
    expect(family('h2o(budget=0.2)+fp16')).toBe('h2o'); // fp16 is the default codec
    expect(family('full+fp32')).toBe('full, full+fp32');
    expect(family('full')).toBe('full, full+fp32');
    expect(family('full+int(bits=4)')).toBe('full+int');
    // a qhitter with no codec stores its own int codec; one with +fp32 stores f32
    expect(family('qhitter(budget=0.2,bits=4)')).toBe('qhitter');
    expect(family('qhitter(budget=0.2)+fp32')).toBe('qhitter+fp32');
    // a line sweeps the budget or the bits; the other parameters make variants, each its own line
    expect(family('full+kvquant(bits=3,outliers=0)')).toBe('full+kvquant(outliers=0)');
    expect(family('qhitter(budget=0.2,alpha=0.5,bits=4)')).toBe('qhitter(alpha=0.5)');
    expect(family('window(sinks=4,recent=0.2)')).toBe('window(sinks=4)');
    expect(family('full+int(kbits=2,vbits=2,kaxis=channel)')).toBe('full+int(kaxis=channel)');
    expect(family('full+kvquant(bits=2,calib=results/calibration/m.fisher.calib)')).toBe('full+kvquant(calib=m.fisher.calib)');
    expect(budgetFraction('tova(budget=0.1)+fp32')).toBe(0.1);
    expect(budgetFraction('window(sinks=4,recent=0.2)')).toBe(0.2);
    expect(budgetFraction('h2o(budget=512)')).toBeUndefined();
    expect(budgetFraction('full')).toBeUndefined();
  });

  it('reads a grid back from cell metrics', () => {
    const g = readGrid({ accuracy: 0.5, [cellMetric(512, 50)]: 1, [cellMetric(256, 0)]: 0, [cellMetric(256, 50)]: 0.5 });
    expect(g.lengths).toEqual([256, 512]);
    expect(g.depths).toEqual([0, 50]);
    expect(g.acc.get('256,50')).toBe(0.5);
    expect(g.acc.has('512,0')).toBe(false);
  });

  it('draws every kind of plot for a sweep with every task, with one line per family', () => {
    const sections = buildSections(fixtureRows());
    expect(sections.map((s) => s.table.task)).toEqual(['ppl', 'fidelity', 'passkey', 'needle', 'xsum']);
    const ids = sections.flatMap((s) => s.plots.map((p) => p.id));
    for (const prefix of ['pareto-ref-6m-ppl', 'budget-ref-6m-ppl', 'pareto-ref-6m-fidelity', 'heatmap-ref-6m-passkey', 'heatmap-ref-6m-needle', 'rouge-ref-6m-xsum']) {
      expect(ids.some((id) => id.startsWith(prefix)), prefix).toBe(true);
    }
    expect(new Set(ids).size).toBe(ids.length);
    const pareto = sections[0]!.plots.find((p) => p.id.startsWith('pareto'))!;
    const series = [...pareto.svg.matchAll(/data-series="([^"]+)" d="([^"]+)"/g)].map((m) => [m[1], m[2]!.split(/[ML]/).length - 1]);
    expect(series).toEqual([['full, full+fp32', 2], ['h2o', 3], ['window(sinks=4)', 2]]);
    const heat = sections[2]!.plots[0]!;
    expect(heat.svg.match(/class="cell"/g)).toHaveLength(7 * 6);
    const bars = sections[4]!.plots[0]!;
    expect(bars.svg.match(/class="bar"/g)).toHaveLength(7 * 3);
  });

  it('gives every series its own look: the policy colour and marker, a dash per codec; a name always the same', () => {
    const styles = seriesStyles(['window+fp32', 'window', 'h2o+fp32', 'h2o', 'h2o+int', 'full, full+fp32', 'random', 'random']);
    const keys = styles.map((s) => `${s.color} ${s.dash}`);
    expect(new Set(keys.slice(0, 7)).size).toBe(7);
    expect(keys[7]).toBe(keys[6]); // one method, one style
    expect(styles[0]!.color).toBe(styles[1]!.color); // one policy, one colour
    expect(styles[0]!.dash).not.toBe(styles[1]!.dash); // its codecs told apart by the dash
    expect(new Set(styles.slice(2, 5).map((s) => s.dash)).size).toBe(3);
    expect(new Set([styles[1], styles[3], styles[5], styles[6]].map((s) => s!.color)).size).toBe(4); // policies apart by colour
    expect(new Set([styles[1], styles[3], styles[5], styles[6]].map((s) => s!.marker)).size).toBe(4); // and by marker
    expect(styles[5]!.dash).toBe(''); // the full cache in fp16 and fp32: one solid line
  });

  it('draws the full cache in each quantizing codec (turboquant too) in a colour of its own; a rotation is a variant of its codec', () => {
    const names = ['full+int', 'full+kvquant', 'full+bf16', 'full+turboquant', 'full+int(rotate=hadamard)', 'full+turboquant(boundary=2)', 'full, full+fp32'];
    expect(family('full+int(bits=4,rotate=hadamard)')).toBe('full+int(rotate=hadamard)');
    expect(family('full+turboquant(kbits=3,vbits=4)')).toBe('full+turboquant');
    const styles = seriesStyles(names);
    expect(new Set([0, 1, 2, 3, 6].map((i) => styles[i]!.color)).size).toBe(5); // not the float full cache's black
    expect(styles[4]!.color).toBe(styles[0]!.color);
    expect(styles[5]!.color).toBe(styles[3]!.color);
    expect(new Set(styles.map((s) => `${s.color} ${s.dash} ${s.marker}`)).size).toBe(names.length);
  });

  it('gives the 2026 methods looks of their own: Expected Attention and KVzip a colour and marker each, AdaKV its policy\'s colour in another dash', () => {
    const names = ['full, full+fp32', 'window', 'h2o', 'scissorhands', 'tova', 'snapkv', 'random', 'knorm', 'qhitter', 'expected', 'kvzip'];
    const styles = seriesStyles(names);
    expect(new Set(styles.map((s) => s.color)).size).toBe(names.length);
    expect(new Set(styles.map((s) => s.marker)).size).toBe(names.length);
    expect(family('h2o(budget=0.2,heads=adakv)')).toBe('h2o(heads=adakv)');
    const [h2o, adakv] = seriesStyles(['h2o', 'h2o(heads=adakv)']);
    expect(adakv!.color).toBe(h2o!.color);
    expect(`${adakv!.dash} ${adakv!.marker}`).not.toBe(`${h2o!.dash} ${h2o!.marker}`);
  });

  it('clips a baseline far off the scale and says so; accuracy runs from 0 to 1; ticks read 10K, not 1.0e+4', () => {
    const rows = fixtureRows().filter((r) => r.task === 'ppl');
    rows.push({ ...rows[3]!, cache: 'random(budget=0.2)', key: 'r', metrics: { ppl: 250000, tokens: 2047, chunks: 1 } });
    const [section] = buildSections(rows);
    const pareto = section!.plots.find((p) => p.id.startsWith('pareto'))!;
    expect(pareto.caption).toContain('Off the scale');
    expect(pareto.caption).toContain('random(budget=0.2) (250K)');
    expect(pareto.svg).toContain('class="clipped"');
    expect(pareto.svg).not.toMatch(/e\+\d/);
    const passkey = buildSections(fixtureRows())[2]!.plots.find((p) => p.id.startsWith('budget'))!;
    const yTicks = [...passkey.svg.matchAll(/text-anchor="end" fill="#333">([^<]+)</g)].map((m) => Number(m[1]));
    expect(Math.min(...yTicks)).toBe(0);
    expect(Math.max(...yTicks)).toBe(1);
  });

  it('says once that the full cache scores 0 on passkey instead of drawing a panel per cache', () => {
    const rows = fixtureRows().filter((r) => r.task === 'passkey').map((r) => ({ ...r, metrics: Object.fromEntries(Object.keys(r.metrics).map((k) => [k, k === 'trials' ? 2 : 0])) }));
    const [section] = buildSections(rows);
    expect(section!.plots).toHaveLength(0);
    expect(section!.table.notes.join(' ')).toContain('The full cache (full) already scores 0');
  });

  it('compares with any uncompressed cache of the run: full (fp16) first, else full+fp32; compression is against fp16', () => {
    const ppl = fixtureRows().filter((r) => r.task === 'ppl');
    const both = buildSections(ppl)[0]!.table;
    expect(both.columns.map((c) => c.header)).toContain('Δ% vs full');
    expect(both.columns.map((c) => c.header)).toContain('compression × vs fp16');
    expect(both.rows[0]!.cache).toBe('full');
    const fp32 = buildSections(ppl.filter((r) => r.cache !== 'full'))[0]!.table;
    expect(fp32.rows[0]!.cache).toBe('full+fp32');
    const delta = fp32.columns.findIndex((c) => c.header === 'Δ% vs full+fp32');
    expect(delta).toBeGreaterThan(0);
    const h2o = fp32.rows.find((r) => r.cache === 'h2o(budget=0.2)')!;
    expect(h2o.cells[delta]!.value).toBeCloseTo((100 * (621 - 600)) / 600, 6); // ppl 600 + 3·7 against 600
    const passkey = fixtureRows().filter((r) => r.task === 'passkey' && r.cache !== 'full')
      .map((r) => ({ ...r, metrics: Object.fromEntries(Object.keys(r.metrics).map((k) => [k, k === 'trials' ? 2 : 0])) }));
    const [zero] = buildSections(passkey);
    expect(zero!.plots).toHaveLength(0);
    expect(zero!.table.notes.join(' ')).toContain('The full cache (full+fp32) already scores 0');
  });

  it('shows the bytes at the end beside the held maximum when a codec notes its staging, and the note once', () => {
    const note = 'kvquant: no calibration file, so each layer kept its first 64 tokens as f16 rows';
    const rows = fixtureRows().filter((r) => r.task === 'ppl');
    const plain = buildSections(rows)[0]!.table;
    expect(plain.columns.map((c) => c.header)).not.toContain('KV bytes at end');
    rows.push(...[0.2, 0.5].map((b) => ({ ...rows[0]!, cache: `h2o(budget=${b})+kvquant(bits=3)`, memory: { ...rows[0]!.memory, kv_bytes_held: 4096, kv_bytes_end: 1024 * b * 10, note } })));
    const t = buildSections(rows)[0]!.table;
    const end = t.columns.findIndex((c) => c.header === 'KV bytes at end');
    expect(end).toBeGreaterThan(0);
    expect(t.rows.find((r) => r.cache === 'h2o(budget=0.2)+kvquant(bits=3)')!.cells[end]!.value).toBe(2048);
    expect(t.notes.filter((n) => n.includes(note))).toEqual([`h2o(budget=0.2)+kvquant(bits=3), h2o(budget=0.5)+kvquant(bits=3): ${note}`]);
  });

  it('draws ROUGE error bars from several seeds, full labels, and one experiment per store named by model', () => {
    const xsum = fixtureRows().filter((r) => r.task === 'xsum');
    const seed1 = xsum.map((r) => ({ ...r, seed: 1, store: 'results/q-seed1.jsonl', metrics: { ...r.metrics, rouge1: r.metrics.rouge1! + 0.02 } }));
    const other = xsum.map((r) => ({ ...r, store: 'results/other.jsonl' }));
    const sections = buildSections([...xsum.map((r) => ({ ...r, store: 'results/q.jsonl' })), ...seed1, ...other]);
    expect(sections).toHaveLength(2); // q and q-seed1 together, other apart
    expect(sections[0]!.table.title).toBe('ref-6m · xsum · items=10 stemmer=porter · q');
    const bars = sections[0]!.plots.find((p) => p.id.startsWith('rouge'))!;
    expect(bars.svg.match(/class="error-bar"/g)).toHaveLength(7 * 3);
    expect(bars.caption).toContain('mean over 2 sampling seeds');
    expect(bars.svg).not.toContain('…');
    expect(sections[0]!.table.rows.find((r) => r.cache === 'full+fp32')!.cells[1]!.value).toBeCloseTo(0.11, 10);
    expect(sections[1]!.plots[0]!.svg).not.toContain('error-bar');
  });

  it('renders a self-contained page and Markdown with image links', () => {
    const sections = buildSections(fixtureRows());
    const html = renderHtml(sections, [{ file: 'results/x.jsonl', rows: 35 }]);
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).not.toMatch(/<script|<link|src="http|href="http/);
    expect(html.match(/<svg /g)!.length).toBe(sections.reduce((n, s) => n + s.plots.length, 0));
    expect(html).toContain('<code>h2o(budget=0.2)</code>');
    const md = renderMarkdown(sections.map((s) => s.table), [], sections.map((s) => s.plots.map((p) => ({ file: `${p.id}.png`, title: p.title }))));
    expect(md).toContain('![perplexity vs KV bytes per token');
    expect(md).toContain('| `h2o(budget=0.2)` | 0.01200 | 0.9400 |');
  });

  it('keeps a model name with Markdown or HTML in it to one plain heading line (issue 22)', () => {
    const rows = fixtureRows().filter((r) => r.task === 'ppl').map((r) => ({ ...r, model: '/m/<img src=x onerror=alert(1)>\n# owned [link](x) `code` *b*.gguf' }));
    const md = renderMarkdown(buildSections(rows).map((s) => s.table));
    const heading = md.split('\n').find((l) => l.startsWith('## '))!;
    expect(md.split('\n').filter((l) => l.startsWith('#'))).toEqual(['# kvpack results', heading]);
    expect(heading).toContain('\\<img src=x onerror=alert(1)\\> \\# owned \\[link\\](x) \\`code\\` \\*b\\*');
    expect(heading).not.toMatch(/(^|[^\\])[<>[\]`*]/);
  });

  /** Each plotted series of an SVG: name → "colour dash" as drawn (lines and baselines). */
  const drawn = (svg: string): [string, string][] =>
    [...svg.matchAll(/<(?:path class="series"|line class="ref") data-series="([^"]+)"[^>]*? stroke="([^"]+)"[^>]*?(?: stroke-dasharray="([^"]+)")?\/?>/g)].map((m) => [m[1]!, `${m[2]} ${m[3] ?? 'solid'}`]);

  it('labels each Pareto point with its budget, or what else varies along its line', () => {
    expect(lineTags(['h2o(budget=0.2)+fp32', 'h2o(budget=0.5)+fp32'])).toEqual(['0.2', '0.5']);
    expect(lineTags(['window(sinks=4,recent=0.5)'])).toEqual(['0.5']);
    expect(lineTags(['h2o(budget=512)'])).toEqual(['512']);
    expect(lineTags(['full+int(bits=4)', 'full+int(bits=8)', 'full+int(kbits=4,vbits=2)'])).toEqual(['4-bit', '8-bit', 'K4V2']);
    expect(lineTags(['full', 'full+fp32'])).toEqual(['fp16', 'fp32']);
    // one budget, two bit widths: the bits; both varying: both
    expect(lineTags(['h2o(budget=0.2)+int(bits=4)', 'h2o(budget=0.2)+int(bits=8)'])).toEqual(['4-bit', '8-bit']);
    expect(lineTags(['qhitter(budget=0.2,bits=4)', 'qhitter(budget=0.5,bits=8)'])).toEqual(['0.2, 4-bit', '0.5, 8-bit']);
    const pareto = buildSections(fixtureRows())[0]!.plots.find((p) => p.id.startsWith('pareto'))!;
    const labels = [...pareto.svg.matchAll(/class="point-label"[^>]*>([^<]+)</g)].map((m) => m[1]);
    expect(new Set(labels)).toEqual(new Set(['fp32', 'fp16', '0.5', '0.2', '0.1']));
    // h2o and window both have budgets 0.5 and 0.2, at points far apart here: each is labelled
    expect(labels.filter((l) => l === '0.5')).toHaveLength(2);
  });

  it('draws a method alike in every plot of a report, whatever else a plot holds', () => {
    const rows = fixtureRows();
    // in the fidelity run, h2o+fp32 comes before h2o (it ran first)
    const at = rows.findIndex((r) => r.task === 'fidelity' && r.cache.startsWith('h2o'));
    rows.splice(at, 0, { ...rows[at]!, cache: 'h2o(budget=0.2)+fp32', key: 'k32', metrics: { ...rows[at]!.metrics, kl: 0.05 } });
    const styles = new Map<string, Set<string>>();
    let plots = 0;
    for (const p of buildSections(rows).flatMap((s) => s.plots)) {
      for (const [name, style] of drawn(p.svg)) styles.set(name, (styles.get(name) ?? new Set()).add(style));
      plots++;
    }
    expect(plots).toBeGreaterThan(5);
    expect(styles.get('h2o')!.size).toBe(1);
    expect(styles.get('h2o+fp32')).toBeDefined();
    for (const [name, s] of styles) expect([...s], name).toHaveLength(1);
    // and two methods never look alike
    const all = [...styles.values()].map((s) => [...s][0]);
    expect(new Set(all).size).toBe(all.length);
  });

  it('keeps lines that lie on top of each other visible: their own dash and marker, and see-through', () => {
    // h2o and window with the same bytes and perplexity: the lines coincide
    const rows = fixtureRows().filter((r) => r.task === 'ppl').map((r) => (r.cache.startsWith('window') ? { ...r, memory: { ...r.memory, kv_bytes_per_token: r.cache.includes('0.5') ? 1600 : 700 }, metrics: { ...r.metrics, ppl: r.cache.includes('0.5') ? 614 : 621 } } : r));
    const pareto = buildSections(rows)[0]!.plots.find((p) => p.id.startsWith('pareto'))!;
    const dashes = new Map(drawn(pareto.svg));
    expect(dashes.get('h2o')!.split(' ')[1]).not.toBe(dashes.get('window(sinks=4)')!.split(' ')[1]);
    const plot = pareto.svg.slice(0, pareto.svg.indexOf('class="legend-item"'));
    const markers = (name: string): string[] => {
      const color = dashes.get(name)!.split(' ')[0];
      return [...plot.matchAll(new RegExp(`<(circle|polygon) class="marker" fill="${color}"[^>]*?(?:points="([^"]+)"|r=)`, 'g'))]
        .map((m) => `${m[1]} of ${m[2]?.split(' ').length ?? 0}`); // the shape and its number of corners
    };
    expect(markers('h2o')).toHaveLength(3); // a marker on every point
    expect(markers('window(sinks=4)')).toHaveLength(2);
    expect(markers('h2o')[0]).not.toBe(markers('window(sinks=4)')[0]); // another shape
    expect(pareto.svg).toMatch(/class="series"[^>]* stroke-opacity="0\.[0-9]+"/);
  });

  it('lists in each legend what the plot draws, and nothing else', () => {
    for (const p of buildSections(fixtureRows()).flatMap((s) => s.plots)) {
      const legend = [...p.svg.matchAll(/class="legend-item" data-series="([^"]+)"/g)].map((m) => m[1]);
      if (p.id.startsWith('rouge')) {
        expect(legend, p.id).toEqual(['ROUGE-1 F1', 'ROUGE-2 F1', 'ROUGE-L F1']);
        continue;
      }
      expect([...legend].sort(), p.id).toEqual([...new Set(drawn(p.svg).map(([n]) => n))].sort());
      if (p.id.startsWith('budget')) expect(legend, p.id).toContain('full, full+fp32'); // the baselines too
      if (p.id.startsWith('heatmap')) expect(legend, p.id).toEqual([]); // a colour scale, not series
    }
  });

  it('draws heatmaps in a colour-blind-safe scale, lighter as accuracy rises, with each value in its cell', () => {
    // relative luminance (WCAG): a scale that only rises reads in greyscale and without red–green vision
    const luminance = (rgb: string): number => {
      const [r, g, b] = rgb.match(/\d+/g)!.map((c) => Number(c) / 255).map((c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
      return 0.2126 * r! + 0.7152 * g! + 0.0722 * b!;
    };
    const ls = Array.from({ length: 21 }, (_, k) => luminance(heat(k / 20)));
    for (let k = 1; k < ls.length; k++) expect(ls[k]!, `at ${k / 20}`).toBeGreaterThan(ls[k - 1]!);
    expect(ls[20]! / ls[0]!).toBeGreaterThan(10);
    const rows = fixtureRows();
    const heatmap = buildSections(rows)[2]!.plots[0]!;
    const values = [...heatmap.svg.matchAll(/class="cell-value"[^>]*>([^<]+)</g)].map((m) => Number(m[1]));
    expect(values).toHaveLength(7 * 6);
    // the panels in cache order, rows by length, columns by depth: the fixture's accuracies
    const panels = [...heatmap.svg.matchAll(/class="panel" data-cache="([^"]+)"/g)].map((m) => m[1]);
    const expected = panels.map((cache) => rows.find((r) => r.task === 'passkey' && r.cache === cache)!)
      .flatMap((r) => [256, 512].flatMap((L) => [0, 50, 100].map((d) => r.metrics[`acc_L${L}_d${d}`]!)));
    expect(values).toEqual(expected);
  });

  it('writes a standalone SVG file per plot with --out, no browser needed, and drops those of plots gone', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-svg-'));
    try {
      fs.writeFileSync(path.join(dir, 'pareto-gone-ppl.svg'), '<svg/>');
      fs.writeFileSync(path.join(dir, 'mine.svg'), '<svg/>'); // not a plot's name: left alone
      fs.writeFileSync(path.join(dir, 'pareto-old-ppl.png'), 'x'); // a PNG stays until PNGs are written again
      const sections = buildSections(fixtureRows());
      await writeReport(dir, sections, [], [], false);
      const plots = sections.flatMap((s) => s.plots);
      expect(fs.readdirSync(dir).filter((f) => f.endsWith('.svg')).sort()).toEqual([...plots.map((p) => `${p.id}.svg`), 'mine.svg'].sort());
      for (const p of plots) {
        const svg = fs.readFileSync(path.join(dir, `${p.id}.svg`), 'utf8');
        expect(svg).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>\n<svg xmlns="http:\/\/www.w3.org\/2000\/svg" id="/);
        expect(svg).toContain(p.svg);
      }
      expect(fs.readdirSync(dir).filter((f) => f.endsWith('.png'))).toEqual(['pareto-old-ppl.png']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
