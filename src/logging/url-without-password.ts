// A connection URL as it may be shown (an error message, a log line): DATABASE_URL and REDIS_URL carry passwords.

export function urlWithoutPassword(connectionUrl: string): string {
  const url = new URL(connectionUrl);
  url.password = '';
  return url.toString();
}
