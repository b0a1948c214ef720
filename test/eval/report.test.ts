import { describe, expect, it } from 'vitest';
import { budgetFraction, family } from '../../src/eval/plots.js';
import { buildSections, renderHtml, renderMarkdown } from '../../src/eval/report.js';
import { cellMetric, readGrid } from '../../src/eval/retrieval.js';
import { fixtureRows } from './report-fixture.js';

describe('report plots', () => {
  it('names families and budgets from cache specs', () => {
    expect(family('h2o(budget=0.2)+fp16')).toBe('h2o+fp16');
    expect(family('h2o(budget=0.2)')).toBe('h2o+fp32');
    expect(family('full+fp16')).toBe('full+float');
    expect(family('full+int(bits=4)')).toBe('full+int');
    expect(budgetFraction('tova(budget=0.1)+fp16')).toBe(0.1);
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
    expect(series).toEqual([['full+float', 2], ['h2o+fp16', 3], ['window+fp16', 2]]);
    const heat = sections[2]!.plots[0]!;
    expect(heat.svg.match(/class="cell"/g)).toHaveLength(7 * 6);
    const bars = sections[4]!.plots[0]!;
    expect(bars.svg.match(/class="bar"/g)).toHaveLength(7 * 3);
  });

  it('renders a self-contained page and Markdown with image links', () => {
    const sections = buildSections(fixtureRows());
    const html = renderHtml(sections, [{ file: 'results/x.jsonl', rows: 35 }]);
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).not.toMatch(/<script|<link|src="http|href="http/);
    expect(html.match(/<svg /g)!.length).toBe(sections.reduce((n, s) => n + s.plots.length, 0));
    expect(html).toContain('<code>h2o(budget=0.2)+fp16</code>');
    const md = renderMarkdown(sections.map((s) => s.table), [], sections.map((s) => s.plots.map((p) => ({ file: `${p.id}.png`, title: p.title }))));
    expect(md).toContain('![perplexity vs KV bytes per token');
    expect(md).toContain('| `h2o(budget=0.2)+fp16` | 0.01200 | 0.9400 |');
  });
});
