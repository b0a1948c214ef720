#!/usr/bin/env python3
"""Trains the recall model: a small Llama (GQA, head_dim 64, RoPE "rotate half", tied embeddings) on a
curriculum of synthetic retrieval (copies, passkeys, needles, key-value pairs) mixed with C4 text, at
growing lengths. Data comes from data.mjs (kvpack's tokenizer and prompt builders). Checkpoints to
--ckpt and resumes from there; writes the HF directory (config.json, model.safetensors, tokenizer.json)
to --ckpt/hf at every checkpoint. CPU by default (--device cuda where one is lent).
"""
import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# a mix that leans on copying, so induction heads form before the retrieval prompts need them
COPY_FIRST = 'copy=0.5+passkey=0.15+needle=0.1+multikey=0.15+plain=0.1'
# the answer kinds of data.mjs's mask codes 1..4
KINDS = ['copy', 'passkey', 'needle', 'multikey']
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--ckpt', default='/tmp/recall-ckpt', help='checkpoint folder (resumed from when it holds one)')
    p.add_argument('--data', default='/tmp/recall-data', help='folder for generated training sequences')
    p.add_argument('--tokenizer', default=os.path.join(ROOT, '..', 'shared', 'models', 'ref-6m', 'tokenizer.json'))
    p.add_argument('--seed', type=int, default=1234)
    p.add_argument('--layers', type=int, default=2)
    p.add_argument('--hidden', type=int, default=256)
    p.add_argument('--heads', type=int, default=4)
    p.add_argument('--kv-heads', type=int, default=2)
    p.add_argument('--ffn', type=int, default=704)
    p.add_argument('--vocab', type=int, default=8192)
    p.add_argument('--rope-theta', type=float, default=10000.0)
    # curriculum: LENGTH:STEPS[:MIX],... (the last stage runs until stopped; MIX: data.mjs's --mix, e.g.
    # copy=0.5+plain=0.5, default its own mix); batch tokens stay fixed
    p.add_argument('--stages', default='256:340,256:300:' + COPY_FIRST + ',512:300,1024:300,2048:1000000')
    p.add_argument('--batch-tokens', type=int, default=2048)
    p.add_argument('--advance-copy-acc', type=float, default=0.5,
                   help='a stage before a longer one ends after its steps only once the copy accuracy (a running '
                        'mean) reaches this: longer sequences are no use before the model copies')
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--warmup', type=int, default=50)
    p.add_argument('--answer-weight', type=float, default=1.0, help='weight of the extra loss on answer tokens')
    p.add_argument('--lm-sample', type=float, default=0.25,
                   help='share of the other positions the loss reads (the 8192-way output layer is most of the work)')
    p.add_argument('--shard-sequences', type=int, default=0, help='sequences per data shard (default: 2M tokens)')
    p.add_argument('--save-every', type=float, default=240, help='seconds between checkpoints')
    p.add_argument('--max-steps', type=int, default=0, help='stop after this many steps in all (0: never)')
    p.add_argument('--threads', type=int, default=0)
    p.add_argument('--device', default='cpu')
    return p.parse_args()


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.h, self.kv, self.d = a.heads, a.kv_heads, a.hidden // a.heads
        self.input_layernorm = RMSNorm(a.hidden)
        self.q_proj = nn.Linear(a.hidden, self.h * self.d, bias=False)
        self.k_proj = nn.Linear(a.hidden, self.kv * self.d, bias=False)
        self.v_proj = nn.Linear(a.hidden, self.kv * self.d, bias=False)
        self.o_proj = nn.Linear(self.h * self.d, a.hidden, bias=False)
        self.post_attention_layernorm = RMSNorm(a.hidden)
        self.gate_proj = nn.Linear(a.hidden, a.ffn, bias=False)
        self.up_proj = nn.Linear(a.hidden, a.ffn, bias=False)
        self.down_proj = nn.Linear(a.ffn, a.hidden, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        y = self.input_layernorm(x)
        q = self.q_proj(y).view(b, t, self.h, self.d).transpose(1, 2)
        k = self.k_proj(y).view(b, t, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(y).view(b, t, self.kv, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.h // self.kv  # HF's repeat_kv: query head i reads KV head i // rep
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.d) + mask
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, self.h * self.d)
        x = x + self.o_proj(y)
        y = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(y)) * self.up_proj(y))


class Llama(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        self.embed_tokens = nn.Embedding(a.vocab, a.hidden)
        self.layers = nn.ModuleList(Block(a) for _ in range(a.layers))
        self.norm = RMSNorm(a.hidden)
        d = a.hidden // a.heads
        self.register_buffer('inv_freq', 1.0 / (a.rope_theta ** (torch.arange(0, d, 2).float() / d)), persistent=False)
        for n, w in self.named_parameters():
            if w.dim() == 2:
                std = 0.02 / math.sqrt(2 * a.layers) if n.endswith(('o_proj.weight', 'down_proj.weight')) else 0.02
                nn.init.normal_(w, std=std)

    def forward(self, ids, positions=None):
        """Logits at every position, or only at `positions` (a [batch, time] bool mask) as [n, vocab]."""
        t = ids.shape[1]
        freqs = torch.outer(torch.arange(t, device=ids.device).float(), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        mask = torch.full((t, t), float('-inf'), device=ids.device).triu(1)
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        x = self.norm(x)
        if positions is not None:
            x = x[positions]
        return x @ self.embed_tokens.weight.T  # tied embeddings


# ---------------------------------------------------------------------------------------------------
# Export: the HF directory kvpack loads


def hf_tensors(model):
    out = {'model.embed_tokens.weight': model.embed_tokens.weight, 'model.norm.weight': model.norm.weight}
    for i, l in enumerate(model.layers):
        for n in ['q_proj', 'k_proj', 'v_proj', 'o_proj']:
            out[f'model.layers.{i}.self_attn.{n}.weight'] = getattr(l, n).weight
        for n in ['gate_proj', 'up_proj', 'down_proj']:
            out[f'model.layers.{i}.mlp.{n}.weight'] = getattr(l, n).weight
        out[f'model.layers.{i}.input_layernorm.weight'] = l.input_layernorm.weight
        out[f'model.layers.{i}.post_attention_layernorm.weight'] = l.post_attention_layernorm.weight
    return {k: v.detach().float().cpu().numpy() for k, v in out.items()}


def write_safetensors(path, tensors, dtype):
    np_dtype, name = (np.float16, 'F16') if dtype == 'f16' else (np.float32, 'F32')
    header, blobs, offset = {}, [], 0
    for k in sorted(tensors):
        b = np.ascontiguousarray(tensors[k].astype(np_dtype)).tobytes()
        header[k] = {'dtype': name, 'shape': list(tensors[k].shape), 'data_offsets': [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * (-len(h) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h)
        for b in blobs:
            f.write(b)


def export_hf(model, a, out, max_ctx, dtype='f32'):
    tmp = out + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    config = {
        'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'hidden_size': a.hidden,
        'intermediate_size': a.ffn, 'num_hidden_layers': a.layers, 'num_attention_heads': a.heads,
        'num_key_value_heads': a.kv_heads, 'head_dim': a.hidden // a.heads, 'vocab_size': a.vocab,
        'max_position_embeddings': max_ctx, 'rms_norm_eps': 1e-5, 'rope_theta': a.rope_theta, 'rope_scaling': None,
        'tie_word_embeddings': True, 'hidden_act': 'silu', 'attention_bias': False, 'mlp_bias': False,
        'bos_token_id': 0, 'eos_token_id': 0, 'torch_dtype': 'float16' if dtype == 'f16' else 'float32',
    }
    with open(os.path.join(tmp, 'config.json'), 'w') as f:
        json.dump(config, f, indent=2)
    write_safetensors(os.path.join(tmp, 'model.safetensors'), hf_tensors(model), dtype)
    shutil.copy(a.tokenizer, os.path.join(tmp, 'tokenizer.json'))
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


# ---------------------------------------------------------------------------------------------------
# Data: shards of (ids, answer mask) per length, made by data.mjs


class Shards:
    def __init__(self, a, length, mix, shard_index):
        self.a, self.length, self.mix = a, length, mix
        self.per_shard = a.shard_sequences or max(64, 2_000_000 // length)
        self.index = shard_index
        self.next_proc = None

    def _seed(self, i):
        return self.a.seed * 1000 + i

    def _paths(self, i):
        base = os.path.join(self.a.data, f'{self.length}-{self._seed(i)}' + (f'-{self.mix}' if self.mix else ''))
        return base + '.ids', base + '.mask'

    def _spawn(self, i):
        if os.path.exists(self._paths(i)[0]):
            return None
        cmd = ['node', os.path.join(HERE, 'data.mjs'), '--out', self.a.data, '--length', str(self.length),
               '--sequences', str(self.per_shard), '--seed', str(self._seed(i)), '--tokenizer', self.a.tokenizer]
        if self.mix:
            cmd += ['--mix', self.mix]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL)

    def load(self):
        """The current shard as (ids, mask) arrays of [sequences, length]; starts making the next one."""
        if self.next_proc is not None:
            self.next_proc.wait()
        p = self._spawn(self.index)
        if p is not None and p.wait() != 0:
            sys.exit(f'data.mjs failed for length {self.length}')
        ids_path, mask_path = self._paths(self.index)
        ids = np.fromfile(ids_path, dtype=np.uint16).astype(np.int64).reshape(-1, self.length)
        mask = np.fromfile(mask_path, dtype=np.uint8).reshape(-1, self.length)
        self.next_proc = self._spawn(self.index + 1)
        return ids, mask


def main():
    a = parse_args()
    torch.manual_seed(a.seed)
    if a.threads:
        torch.set_num_threads(a.threads)
    stages = [(int(s.split(':')[0]), int(s.split(':')[1]), (s.split(':') + [''])[2]) for s in a.stages.split(',')]
    os.makedirs(a.ckpt, exist_ok=True)
    model = Llama(a).to(a.device)
    decay = [p for p in model.parameters() if p.dim() == 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1}, {'params': rest, 'weight_decay': 0.0}],
                            lr=a.lr, betas=(0.9, 0.95))
    state = {'step': 0, 'tokens': 0, 'seconds': 0.0, 'stage': 0, 'stage_step': 0, 'shard': 0, 'row': 0}
    ckpt_file = os.path.join(a.ckpt, 'ckpt.pt')
    if os.path.exists(ckpt_file):
        c = torch.load(ckpt_file, map_location=a.device)
        model.load_state_dict(c['model'])
        opt.load_state_dict(c['opt'])
        state = c['state']
        torch.set_rng_state(c['rng'])
        print(f'resumed at step {state["step"]} ({state["tokens"]} tokens)', flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f'parameters {n_params} ({n_params - a.vocab * a.hidden} without embeddings)', flush=True)

    def save():
        c = {'model': model.state_dict(), 'opt': opt.state_dict(), 'state': state, 'rng': torch.get_rng_state(), 'args': vars(a)}
        torch.save(c, ckpt_file + '.tmp')
        os.replace(ckpt_file + '.tmp', ckpt_file)
        length = stages[min(state['stage'], len(stages) - 1)][0]
        export_hf(model, a, os.path.join(a.ckpt, 'hf'), max(length, 2048))
        with open(os.path.join(a.ckpt, 'hf', 'training.json'), 'w') as f:
            json.dump({**state, 'args': vars(a), 'parameters': n_params}, f, indent=2)

    last_save = time.time()
    shards = None
    while a.max_steps == 0 or state['step'] < a.max_steps:
        length, steps, mix = stages[state['stage']]
        last = state['stage'] == len(stages) - 1
        longer = not last and stages[state['stage'] + 1][0] > length
        ready = not longer or state.get('copy_acc', 0.0) >= a.advance_copy_acc
        if not last and state['stage_step'] >= steps and ready:
            state.update(stage=state['stage'] + 1, stage_step=0, shard=0, row=0)
            shards = None
            continue
        if shards is None:
            shards = Shards(a, length, mix, state['shard'])
            ids, mask = shards.load()
        batch = max(1, a.batch_tokens // length)
        if state['row'] + batch > len(ids):
            state.update(shard=state['shard'] + 1, row=0)
            shards.index = state['shard']
            ids, mask = shards.load()
        x = torch.from_numpy(ids[state['row']:state['row'] + batch]).to(a.device)
        kinds = torch.from_numpy(mask[state['row']:state['row'] + batch, 1:].astype(np.int64)).to(a.device)
        state['row'] += batch
        lr = a.lr * min(1.0, (state['step'] + 1) / a.warmup)
        for g in opt.param_groups:
            g['lr'] = lr
        t0 = time.time()
        answer = kinds > 0
        sampled = torch.rand(answer.shape, device=a.device) < a.lm_sample
        positions = answer | sampled
        logits = model(x[:, :-1], positions)
        target = x[:, 1:][positions]
        nll = F.cross_entropy(logits, target, reduction='none')
        is_answer = answer[positions]
        lm_nll = nll[sampled[positions]].mean()  # an unbiased estimate of the mean over all positions
        answer_nll = (nll * is_answer).sum() / is_answer.sum().clamp(min=1)
        loss = lm_nll + a.answer_weight * answer_nll
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            right = logits.argmax(-1) == target
            k = kinds[positions]
            acc = {name: right[k == code].float().mean().item() for code, name in enumerate(KINDS, 1) if (k == code).any()}
        if 'copy' in acc:
            state['copy_acc'] = 0.95 * state.get('copy_acc', 0.0) + 0.05 * acc['copy']
        dt = time.time() - t0
        state['step'] += 1
        state['stage_step'] += 1
        state['tokens'] += x.numel()
        state['seconds'] += dt
        if state['step'] % 10 == 0 or state['step'] <= 3:
            accs = ' '.join(f'{n} {v:.3f}' for n, v in acc.items())
            print(f'step {state["step"]} len {length} loss {lm_nll.item():.4f} answer_nll {answer_nll.item():.4f} '
                  f'acc[{accs}] tokens {state["tokens"]} tok/s {x.numel() / dt:.0f} '
                  f'train_s {state["seconds"]:.0f} lr {lr:.2e} copy_mean {state.get("copy_acc", 0.0):.3f}', flush=True)
        if time.time() - last_save > a.save_every:
            save()
            last_save = time.time()
    save()


if __name__ == '__main__':
    main()
