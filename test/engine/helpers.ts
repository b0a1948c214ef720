import path from 'node:path';

export const SHARED = path.resolve('../shared');
export const REF6M_DIR = path.join(SHARED, 'models/ref-6m');
export const REF6M_GGUF = path.join(REF6M_DIR, 'ref-6m.gguf');
export const STORIES_BIN = path.join(SHARED, 'models/stories260K/stories260K.bin');
export const STORIES_GGUF = path.join(SHARED, 'models/stories260K/stories260K.gguf');
export const STORIES_F64_GREEDY = path.join(SHARED, 'models/stories260K/greedy_reference.json');
