import { UsageError } from '../../errors.js';
import { hadamardBlock } from '../../kernels/hadamard.js';
import { oneOf, type Infer } from '../../util/schema.js';
import type { Rotation } from './codec.js';

const ROTATIONS = ['none', 'hadamard'] as const;

/** The rotation parameters of the int and kvquant codecs. */
export const ROTATE_PARAMS = {
  rotate: oneOf(ROTATIONS, {
    default: 'none',
    doc: 'hadamard: rotate keys (queries alike) and values (outputs back) by a block Hadamard transform before quantizing (llama.cpp, QuaRot)',
  }),
  krotate: oneOf(ROTATIONS, { optional: true, doc: 'rotation of keys (default rotate)' }),
  vrotate: oneOf(ROTATIONS, { optional: true, doc: 'rotation of values (default rotate)' }),
};

/** Largest Hadamard blocks, as llama.cpp picks them (it found smaller rotations better for values). */
const KEY_BLOCK = 128;
const VALUE_BLOCK = 64;

/**
 * The Hadamard blocks a codec's parameters ask for on heads of headDim: the largest power of two that
 * divides headDim, at most 128 for keys and 64 for values (llama.cpp rotates only when 64 divides
 * headDim; narrower heads get a smaller block here). `preRope` says why the codec's keys are kept
 * before RoPE, if they are: rotating them would need the inverse rotation fused before the kernel's
 * RoPE, which the kernel does not do, so that is refused.
 */
export function rotationOf(p: Infer<typeof ROTATE_PARAMS>, headDim: number, codec: string, preRope?: string): Rotation {
  const keys = (p.krotate ?? p.rotate) === 'hadamard';
  const values = (p.vrotate ?? p.rotate) === 'hadamard';
  if ((keys || values) && headDim % 2 !== 0) throw new UsageError(`${codec}: a Hadamard rotation needs an even head_dim, not ${headDim}`);
  if (keys && preRope) {
    throw new UsageError(
      `${codec}: keys rotated by a Hadamard transform must be stored after RoPE, but ${preRope}; ` +
        'RoPE does not commute with the rotation (rotate values only with vrotate=hadamard,krotate=none)',
    );
  }
  return { keys: keys ? hadamardBlock(headDim, KEY_BLOCK) : 0, values: values ? hadamardBlock(headDim, VALUE_BLOCK) : 0 };
}
