// The lines of a UTF-8 byte stream with their numbers, for line-oriented formats (APOC JSON lines, Cypher scripts).
import type { Readable } from 'node:stream';
import { LineTooLongError, streamLines } from '../runtime/text-lines';
import { graphFileError } from './graph-file-error';
import type { ForeignRecord, GraphFileReader } from './graph-file-format';

/** A line longer than this is refused (as soon as it is: see streamLines): memory stays bounded whatever the file holds. */
export const MAX_LINE_CHARS = 64 * 1024 * 1024;

export interface NumberedLines {
  /** Batches of [lineNumber (from 1), text without its line ending] in order. */
  batches(): AsyncGenerator<Array<[number, string]>>;
  bytesRead(): number;
}

/**
 * Lines split at LF (a CR before it is dropped); a byte-order mark at the start is skipped. A line longer than
 * maxLineChars is refused with graphFileError naming it.
 */
export function numberedLines(input: Readable, maxLineChars = MAX_LINE_CHARS): NumberedLines {
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
      try {
        for await (const lines of streamLines(counted(), { skipByteOrderMark: true, maxLineChars })) {
          if (lines.length > 0) yield lines.map((line): [number, string] => [++number, stripCr(line)]);
        }
      } catch (error) {
        if (error instanceof LineTooLongError) throw graphFileError(`line ${error.line}`, `the line is longer than ${maxLineChars} characters`);
        throw error;
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
