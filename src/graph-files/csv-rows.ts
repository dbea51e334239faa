// CSV records as neo4j-admin database import reads them with its defaults (org.neo4j.csv.reader): fields separated
// by ',', a field in double quotes may hold ',', line breaks and "" (one quote); a byte-order mark at the start is
// skipped; CR LF ends a line as LF does; empty lines are skipped.
import { StringDecoder } from 'node:string_decoder';

export interface CsvRow {
  /** The line the record starts on (from 1). */
  line: number;
  fields: string[];
  /** Whether each field was in quotes (an empty quoted field is an empty string; an empty bare one is no value). */
  quoted: boolean[];
}

/** The input breaks CSV syntax; `line` is where. */
export class CsvSyntaxError extends Error {
  constructor(
    readonly line: number,
    readonly problem: string,
  ) {
    super(problem);
  }
}

const QUOTE = 0x22;
const COMMA = 0x2c;
const LF = 0x0a;
const CR = 0x0d;
const enum State {
  FieldStart,
  Bare,
  Quoted,
  AfterQuote,
}

/** A field (quoted or not) longer than this is refused: memory stays bounded whatever the file holds. */
export const MAX_FIELD_CHARS = 64 * 1024 * 1024;
/**
 * A record longer than this (its fields and their commas) is refused as soon as it is: a line of many fields would
 * otherwise grow the record without end, however short each field is.
 */
export const MAX_RECORD_CHARS = 64 * 1024 * 1024;
/**
 * A record of more fields than this is refused as soon as it has them: a field costs memory whatever its length (a line
 * of 64 Mi commas, within MAX_RECORD_CHARS, took 14 s and 3 GB to hold as empty fields). No header can name as many
 * columns: it is at most 1 MiB.
 */
export const MAX_RECORD_FIELDS = 1024 * 1024;

/** The records of a CSV byte stream, in batches (one per chunk read). */
export async function* csvRows(input: AsyncIterable<Buffer>): AsyncGenerator<CsvRow[]> {
  const decoder = new StringDecoder('utf8');
  let state = State.FieldStart as State;
  let line = 1;
  let recordLine = 1;
  let fieldLine = 1;
  let field = '';
  let fields: string[] = [];
  let quoted: boolean[] = [];
  let first = true;
  let rows: CsvRow[] = [];
  /** Characters of the fields of the record so far, with a comma after each. */
  let recordChars = 0;
  const endField = (value: string, wasQuoted: boolean) => {
    if (fields.length === MAX_RECORD_FIELDS) throw new CsvSyntaxError(recordLine, `a record has more than ${MAX_RECORD_FIELDS} fields`);
    fields.push(value);
    quoted.push(wasQuoted);
    recordChars += value.length + 1;
    field = '';
  };
  const endRecord = () => {
    // An empty line is no record.
    if (!(fields.length === 1 && fields[0] === '' && !quoted[0])) rows.push({ line: recordLine, fields, quoted });
    fields = [];
    quoted = [];
    recordChars = 0;
  };
  const consume = (text: string) => {
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      switch (state) {
        case State.FieldStart:
          if (fields.length === 0) recordLine = line;
          if (c === QUOTE) {
            state = State.Quoted;
            fieldLine = line;
            start = i + 1;
          } else if (c === COMMA) {
            endField('', false);
          } else if (c === LF) {
            endField('', false);
            endRecord();
            line++;
          } else if (c !== CR) {
            state = State.Bare;
            start = i;
          }
          break;
        case State.Bare:
          if (c === COMMA) {
            endField(field + text.slice(start, i), false);
            state = State.FieldStart;
          } else if (c === LF) {
            const value = field + text.slice(start, i);
            endField(value.endsWith('\r') ? value.slice(0, -1) : value, false);
            endRecord();
            line++;
            state = State.FieldStart;
          }
          break;
        case State.Quoted:
          if (c === QUOTE) {
            field += text.slice(start, i);
            state = State.AfterQuote;
          } else if (c === LF) {
            line++;
          }
          break;
        case State.AfterQuote:
          if (c === QUOTE) {
            // "" inside quotes is one quote.
            field += '"';
            start = i + 1;
            state = State.Quoted;
          } else if (c === COMMA) {
            endField(field, true);
            state = State.FieldStart;
          } else if (c === LF) {
            endField(field, true);
            endRecord();
            line++;
            state = State.FieldStart;
          } else if (c !== CR) {
            throw new CsvSyntaxError(line, `there is text after the closing quote of a field (${JSON.stringify(text.slice(i, i + 20))}); a quote inside a quoted field is written twice ("")`);
          }
          break;
      }
    }
    if (state === State.Bare || state === State.Quoted) field += text.slice(start);
    if (field.length > MAX_FIELD_CHARS) throw new CsvSyntaxError(state === State.Quoted ? fieldLine : line, `a field is longer than ${MAX_FIELD_CHARS} characters`);
    if (recordChars + field.length > MAX_RECORD_CHARS) throw new CsvSyntaxError(recordLine, `a record is longer than ${MAX_RECORD_CHARS} characters`);
  };
  for await (const chunk of input) {
    let text = decoder.write(chunk);
    if (first && text.length > 0) {
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      first = false;
    }
    consume(text);
    if (rows.length > 0) {
      yield rows;
      rows = [];
    }
  }
  consume(decoder.end());
  if (state === State.Quoted) throw new CsvSyntaxError(fieldLine, 'a quoted field is never closed (the file ends inside it)');
  if (state === State.Bare) endField(field.endsWith('\r') ? field.slice(0, -1) : field, false);
  else if (state === State.AfterQuote) endField(field, true);
  if (fields.length > 0) endRecord();
  if (rows.length > 0) yield rows;
}

/** A field as the writer puts it: in quotes (a quote inside doubled) when it holds a delimiter, quote, line break or is empty. */
export function csvField(text: string): string {
  return /[",\r\n]/.test(text) || text === '' ? `"${text.replace(/"/g, '""')}"` : text;
}
