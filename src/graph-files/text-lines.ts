// The lines of a UTF-8 byte stream with their numbers, for line-oriented formats (APOC JSON lines, Cypher scripts).
import type { Readable } from 'node:stream';
import { streamLines } from '../runtime/text-lines';
import type { ForeignRecord, GraphFileReader } from './graph-file-format';

export interface NumberedLines {
  /** Batches of [lineNumber (from 1), text without its line ending] in order. */
  batches(): AsyncGenerator<Array<[number, string]>>;
  bytesRead(): number;
}

/** Lines split at LF (a CR before it is dropped); a byte-order mark at the start is skipped. */
export function numberedLines(input: Readable): NumberedLines {
  let bytes = 0;
  return {
    bytesRead: () => bytes,
    async *batches() {
      let number = 0;
      const counted = async function* () {
        for await (const piece of input as AsyncIterable<Buffer>) {
          bytes += piece.length;
          yield piece;
        }
      };
      for await (const lines of streamLines(counted(), { skipByteOrderMark: true })) {
        if (lines.length > 0) yield lines.map((line): [number, string] => [++number, stripCr(line)]);
      }
    },
  };
}

function stripCr(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}

/** A reader of a line-oriented format: positions are line numbers; subclasses turn `this.lines` into records. */
export abstract class LineFileReader implements GraphFileReader {
  protected readonly lines: NumberedLines;

  constructor(input: Readable) {
    this.lines = numberedLines(input);
  }

  describe(at: number): string {
    return `line ${at}`;
  }

  bytesRead(): number {
    return this.lines.bytesRead();
  }

  abstract records(): AsyncGenerator<ForeignRecord[]>;
}
