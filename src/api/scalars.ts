// The contract's scalars: DateTime (ISO-8601 UTC), JSONObject (graphql-scalars) and Upload (multipart spec).
import { GraphQLError, GraphQLScalarType, Kind } from 'graphql';
import { GraphQLJSONObject } from 'graphql-scalars';

function toIsoString(value: unknown): string {
  const date = value instanceof Date ? value : typeof value === 'number' || typeof value === 'string' ? new Date(value) : null;
  if (!date || Number.isNaN(date.getTime())) throw new GraphQLError(`DateTime cannot represent ${String(value)}`);
  return date.toISOString();
}

/** RFC 3339's date-time (its "T" and "Z" in either case), seconds optional. */
const ISO_DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:[Zz]|[+-](\d{2}):(\d{2}))$/;

function parseIso(text: unknown): Date {
  const fields = typeof text === 'string' ? ISO_DATE_TIME.exec(text) : null;
  if (!fields) {
    throw new GraphQLError(`DateTime must be an RFC 3339 date-time, YYYY-MM-DDThh:mm[:ss[.sss]] ending in Z or an offset written ±hh:mm, e.g. 2026-11-25T10:00:00.000Z or 2026-11-25T15:30:00.000+05:30`, {
      extensions: { code: 'BAD_USER_INPUT' },
    });
  }
  const [year, month, day, hour, minute, second, offsetHours, offsetMinutes] = fields.slice(1).map((field) => Number(field ?? 0));
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const daysInMonth = month === 2 ? (leap ? 29 : 28) : [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  // Date rolls a day or an hour past its end over into the next (February 30th is March 2nd; 24:00 the next day): a
  // mistyped moment would name another one, which a point-in-time restore would then go back to.
  const validBesideSeconds =
    month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth && hour <= 23 && minute <= 59 && offsetHours <= 23 && offsetMinutes <= 59;
  if (validBesideSeconds && minute === 59 && second === 60) {
    // RFC 3339 allows it; a moment counted in milliseconds since the epoch (as every time here is) has no leap second.
    throw new GraphQLError(`"${text}" names a leap second, which times here (milliseconds since the epoch) do not have: use :59.999 or the next minute`, {
      extensions: { code: 'BAD_USER_INPUT' },
    });
  }
  const date = new Date(text as string);
  if (!validBesideSeconds || second > 59 || Number.isNaN(date.getTime())) {
    throw new GraphQLError(`"${text}" is not a valid date-time`, { extensions: { code: 'BAD_USER_INPUT' } });
  }
  return date;
}

export const DateTimeScalar = new GraphQLScalarType<Date, string>({
  name: 'DateTime',
  description:
    'ISO-8601 date-time in UTC, e.g. 2026-11-25T10:00:00.000Z; accepted with Z or an offset (2026-11-25T15:30:00+05:30), to the millisecond (further digits are dropped)',
  serialize: toIsoString,
  parseValue: parseIso,
  parseLiteral: (ast) => parseIso(ast.kind === Kind.STRING ? ast.value : undefined),
});

export const JSONObjectScalar = new GraphQLScalarType({
  ...GraphQLJSONObject.toConfig(),
  description: 'A JSON object (graphql-scalars JSONObject): property maps of nodes and relationships',
});

/** What readMultipartRequest (http/multipart-request.ts) puts where an Upload variable was: resolves to the file. */
export interface FileUploadPromise {
  promise: Promise<FileUpload>;
}
export interface FileUpload {
  filename: string;
  mimetype: string;
  encoding: string;
  createReadStream(): NodeJS.ReadableStream;
}

// Accepts what readMultipartRequest produced for a file part.
export const UploadScalar = new GraphQLScalarType<Promise<FileUpload>, never>({
  name: 'Upload',
  description: 'A file sent with the GraphQL multipart request spec',
  serialize: () => {
    throw new GraphQLError('Upload is an input-only scalar');
  },
  parseValue: (value) => {
    if (value && typeof value === 'object' && 'promise' in value && (value as FileUploadPromise).promise instanceof Promise) {
      return (value as FileUploadPromise).promise;
    }
    throw new GraphQLError('Upload must be a file sent as a multipart request (GraphQL multipart request spec)', {
      extensions: { code: 'BAD_USER_INPUT' },
    });
  },
  parseLiteral: () => {
    throw new GraphQLError('Upload must be a file sent as a multipart request variable', { extensions: { code: 'BAD_USER_INPUT' } });
  },
});
