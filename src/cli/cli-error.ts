// Errors the CLI reports as one line on stderr, with the exit code they mean.

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Wrong arguments: the message, then the usage text, exit 2. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, 2);
    this.name = 'UsageError';
  }
}

/** Ctrl-C (or the test stop): what was transferred is kept, and the hint says how to resume. Exit 130 as shells do. */
export class Interrupted extends CliError {
  constructor(hint: string) {
    super(`interrupted; ${hint}`, 130);
    this.name = 'Interrupted';
  }
}
