#!/usr/bin/env python3
"""Checks that kvpack runs the trained weights as PyTorch does: next-token log-probabilities of a token
sequence from the checkpoint (train.py's model) against kvpack on an exported model (HF dir or GGUF).
Usage: check.py CKPT_PT MODEL [MODEL…]   (prints the largest difference per model; exits 1 above 1e-2)
"""
import json
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402

SCORE = """
import { loadModel } from './dist/engine/model.js';
const [path, ids] = [process.argv[1], JSON.parse(process.argv[2])];
const model = await loadModel(path, { threads: 1 });
const s = model.session({ cache: 'full' });
console.log(JSON.stringify(Array.from(s.score(ids))));
s.dispose(); await model.close();
"""


def main():
    ckpt, models = sys.argv[1], sys.argv[2:]
    c = torch.load(ckpt, map_location='cpu')
    a = type('A', (), c['args'])
    model = train.Llama(a)
    model.load_state_dict(c['model'])
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(17, a.vocab, (300,), generator=g)
    ids = torch.cat([ids[:100], ids[:100], ids[100:200]])  # a repeat, so attention matters
    with torch.no_grad():
        ref = model(ids[None])[0].log_softmax(-1)[:-1].gather(-1, ids[1:, None])[:, 0]
    worst = 0.0
    for m in models:
        out = subprocess.run(['node', '--input-type=module', '-e', SCORE, m, json.dumps(ids.tolist())],
                             cwd=train.ROOT, capture_output=True, text=True, check=True)
        got = torch.tensor(json.loads(out.stdout))
        diff = (got - ref.double()).abs().max().item()
        worst = max(worst, diff)
        print(f'{m}: max |log p kvpack - log p torch| = {diff:.2e} over {len(got)} tokens')
    sys.exit(1 if worst > 1e-2 else 0)


if __name__ == '__main__':
    main()
