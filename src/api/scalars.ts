// The contract's scalars: DateTime (ISO-8601 UTC), JSONObject (graphql-scalars) and Upload (multipart spec).
import { GraphQLError, GraphQLScalarType, Kind } from 'graphql';
import { GraphQLJSONObject } from 'graphql-scalars';

function toIsoString(value: unknown): string {
  const date = value instanceof Date ? value : typeof value === 'number' || typeof value === 'string' ? new Date(value) : null;
  if (!date || Number.isNaN(date.getTime())) throw new GraphQLError(`DateTime cannot represent ${String(value)}`);
  return date.toISOString();
}

function parseIso(text: unknown): Date {
  if (typeof text !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(text)) {
    throw new GraphQLError(`DateTime must be an ISO-8601 date-time with a time zone, e.g. 2026-11-25T10:00:00.000Z`, {
      extensions: { code: 'BAD_USER_INPUT' },
    });
  }
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) throw new GraphQLError(`"${text}" is not a valid date-time`, { extensions: { code: 'BAD_USER_INPUT' } });
  return date;
}

export const DateTimeScalar = new GraphQLScalarType<Date, string>({
  name: 'DateTime',
  description: 'ISO-8601 date-time in UTC, e.g. 2026-11-25T10:00:00.000Z',
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
