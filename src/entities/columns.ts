// Column types that mean the same on SQLite and PostgreSQL, so one set of migrations serves both.
import { Column, type ColumnOptions, type ValueTransformer } from 'typeorm';

/** pg returns bigint as a string; the app works in numbers (epoch ms, byte counts: all far below 2^53). */
export const bigintAsNumber: ValueTransformer = {
  to: (value: number | null | undefined) => value,
  from: (value: string | number | null) => (value === null || value === undefined ? null : Number(value)),
};

const jsonText: ValueTransformer = {
  to: (value: unknown) => (value === null || value === undefined ? null : JSON.stringify(value)),
  from: (value: string | null) => (value === null || value === undefined ? null : JSON.parse(value)),
};

/** Epoch milliseconds, or a byte count. */
export const BigIntColumn = (options: ColumnOptions = {}) =>
  Column({ type: 'bigint', transformer: bigintAsNumber, ...options });

/** A JSON value kept as text. */
export const JsonColumn = (options: ColumnOptions = {}) => Column({ type: 'text', transformer: jsonText, ...options });

export const IdColumn = (options: ColumnOptions = {}) => Column({ type: 'varchar', length: 36, ...options });
