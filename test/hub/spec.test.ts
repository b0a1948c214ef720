import { describe, expect, it } from 'vitest';
import { isSafeRepoPath, parseRepoSpec } from '../../src/hub/spec.js';

describe('parseRepoSpec', () => {
  it('reads owner/name, @revision and a file path', () => {
    expect(parseRepoSpec('HuggingFaceTB/SmolLM2-135M-Instruct')).toEqual({
      repo: 'HuggingFaceTB/SmolLM2-135M-Instruct', owner: 'HuggingFaceTB', name: 'SmolLM2-135M-Instruct',
    });
    expect(parseRepoSpec('org/model_v1.5@v2.0')).toMatchObject({ repo: 'org/model_v1.5', revision: 'v2.0' });
    expect(parseRepoSpec('org/model-GGUF/model-Q8_0.gguf')).toMatchObject({ repo: 'org/model-GGUF', file: 'model-Q8_0.gguf' });
    expect(parseRepoSpec('org/m@main/sub/x.gguf')).toMatchObject({ revision: 'main', file: 'sub/x.gguf' });
  });

  it('refuses what cannot be a repo id, so it is treated as a local path', () => {
    for (const spec of ['model', './a/b', '../a/b', '/abs/path', 'a/b/../c', 'a//b', '-a/b', 'a/b.', 'a--b/c', 'a/b@', 'a/b/']) {
      expect(parseRepoSpec(spec), spec).toBeUndefined();
    }
  });
});

describe('isSafeRepoPath', () => {
  it('accepts nested relative paths and refuses ones that climb out', () => {
    expect(isSafeRepoPath('onnx/model.onnx')).toBe(true);
    for (const p of ['', '/etc/passwd', '../x', 'a/../../x', 'a\\b', 'a//b', './x']) expect(isSafeRepoPath(p), p).toBe(false);
  });
});
