// The lines of a UTF-8 byte stream with their numbers, for line-oriented formats (APOC JSON lines, Cypher scripts).
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
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
        let text = rest + decoder.write(piece);
        if (first && text.length > 0) {
          if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
          first = false;
        }
        const lines = text.split('\n');
        rest = lines.pop() ?? '';
        const batch: Array<[number, string]> = new Array(lines.length);
        for (let i = 0; i < lines.length; i++) batch[i] = [++number, stripCr(lines[i])];
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
