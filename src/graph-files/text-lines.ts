// The lines of a UTF-8 byte stream with their numbers, for line-oriented formats (APOC JSON lines, Cypher scripts).
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { decodePiece } from '../runtime/text-lines';
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
      const decoder = new StringDecoder('utf8');
      let rest = '';
      let number = 0;
      let first = true;
      for await (const piece of input as AsyncIterable<Buffer>) {
        bytes += piece.length;
        const batch: Array<[number, string]> = [];
        for (let text of decodePiece(decoder, piece)) {
          if (first && text.length > 0) {
            if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
            first = false;
          }
          // Only the new text is split: a line longer than many pieces is not scanned again at each.
          const lines = text.split('\n');
          if (lines.length === 1) {
            rest += text;
            continue;
          }
          lines[0] = rest + lines[0];
          rest = lines.pop()!;
          for (const line of lines) batch.push([++number, stripCr(line)]);
        }
        if (batch.length > 0) yield batch;
      }
      rest += decoder.end();
      if (rest.length > 0) yield [[++number, stripCr(rest)]];
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
