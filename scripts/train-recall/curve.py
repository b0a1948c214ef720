#!/usr/bin/env python3
"""The training curve from train.py's log: per window of steps, the mean LM loss, answer NLL and
answer-token accuracy by kind (copy, passkey, needle, multikey), as a Markdown table.
Usage: curve.py LOG [WINDOW_STEPS]
"""
import re
import sys

KINDS = ['copy', 'passkey', 'needle', 'multikey']
LINE = re.compile(r'^step (\d+) len (\d+) loss ([\d.]+) answer_nll ([\d.]+) acc\[([^\]]*)\] tokens (\d+)')


def main():
    window = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    rows = {}
    for line in open(sys.argv[1]):
        m = LINE.match(line)
        if not m:
            continue
        step = int(m[1])
        acc = dict(zip(*[iter(m[5].split())] * 2)) if m[5] else {}
        rows[step] = (int(m[2]), float(m[3]), float(m[4]), {k: float(v) for k, v in acc.items()}, int(m[6]))
    print('| steps | length | tokens seen | LM loss | answer NLL | ' + ' | '.join(f'{k} acc' for k in KINDS) + ' |')
    print('|---|---:|---:|---:|---:|' + '---:|' * len(KINDS))
    steps = sorted(rows)
    for lo in range(0, steps[-1] + 1, window) if steps else []:
        w = [rows[s] for s in steps if lo < s <= lo + window]
        if not w:
            continue
        mean = lambda xs: sum(xs) / len(xs) if xs else float('nan')  # noqa: E731
        accs = [mean([r[3][k] for r in w if k in r[3]]) for k in KINDS]
        print(f'| {lo + 1}–{lo + window} | {w[-1][0]} | {w[-1][4]:,} | {mean([r[1] for r in w]):.3f} | '
              f'{mean([r[2] for r in w]):.3f} | ' + ' | '.join('—' if a != a else f'{a:.3f}' for a in accs) + ' |')


if __name__ == '__main__':
    main()
