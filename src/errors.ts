/**
 * Errors a user can cause. Each carries a message that names the thing at fault and what to do;
 * the CLI prints `message` alone (no stack) and exits non-zero.
 */
export class KvpackError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name; // the class's own name, e.g. "UsageError"
  }
}

/** What is wrong with one file: the message is "file: problem", and both stay readable apart. */
export class FileError extends KvpackError {
  constructor(readonly file: string, readonly problem: string) {
    super(`${file}: ${problem}`);
  }
}

/** A model, tokenizer or data file that cannot be read as what it claims to be. */
export class ModelFormatError extends FileError {}

/** A well-formed model whose architecture or tensor type kvpack does not run. */
export class UnsupportedModelError extends FileError {}

/** A bad command-line argument, option or cache spec. */
export class UsageError extends KvpackError {}

/** A request that does not fit: more tokens than the context allows, and so on. */
export class LimitError extends KvpackError {}

/** A forward pass whose numbers stopped being finite (the weights are checked at load: activations overflowed). */
export class NumericError extends KvpackError {}

/** A download that failed (network, HTTP status, size mismatch). */
export class DownloadError extends KvpackError {}

/** A model and cache that would need more memory than there is: refused before anything is read or allocated. */
export class MemoryPlanError extends LimitError {
  constructor(message: string, readonly neededBytes: number, readonly availableBytes: number, readonly longestContext: number) {
    super(message);
  }
}

/** A calibration file that cannot be read, or that belongs to another model. */
export class CalibrationError extends FileError {}

/** A server request at fault in a way the other classes do not name (HTTP status and an OpenAI error code). */
export class RequestError extends KvpackError {
  constructor(message: string, readonly status: number, readonly code: string, readonly param: string | null = null) {
    super(message);
  }
}

/** A cache that would hold more than its session's `maxKvBytes` and whose policy cannot evict. */
export class KvLimitError extends LimitError {
  constructor(message: string, readonly limitBytes: number, readonly neededBytes: number) {
    super(message);
  }
}

/** The server cannot take a request now: its queue is full (429) or it is shutting down (503). */
export class BusyError extends KvpackError {
  constructor(message: string, readonly status: 429 | 503) {
    super(message);
  }
}

/** A request ended before it finished: its client went away, or the server shut down. */
export class CancelledError extends KvpackError {}
