// The origin export links are built on. A request's Host header is the client's to choose, so it is trusted only
// when the operator listed it: otherwise anyone could make the server hand out links to a host of their choosing.
import type { AppConfig } from '../../config/app-config';

/**
 * SNAPGRAPH_PUBLIC_URL when set; else the request's Host when it is one of SNAPGRAPH_ALLOWED_HOSTS (with the scheme
 * listed there); else the first allowed host; else the address the server listens on.
 */
export function publicOrigin(config: Pick<AppConfig, 'publicUrl' | 'allowedHosts'>, listeningUrl: string, hostHeader: string | undefined): string {
  if (config.publicUrl) return config.publicUrl;
  const host = hostHeader?.trim();
  const allowed = host ? config.allowedHosts.find((origin) => sameHost(origin, host)) : undefined;
  return allowed ?? config.allowedHosts[0] ?? listeningUrl;
}

/**
 * Whether a Host header names the allowed origin's host: read as URL reads it under that origin's scheme, so case and
 * the scheme's default port (`a.example:443` for https) make no difference, as they make none to the origin itself.
 */
function sameHost(origin: string, hostHeader: string): boolean {
  const { protocol, host } = new URL(origin);
  try {
    const asked = new URL(`${protocol}//${hostHeader}`);
    // Only a host[:port]: `a.example/x` or `user@a.example` parse too, but are no Host header.
    return asked.host === host && asked.href === `${protocol}//${host}/`;
  } catch {
    return false;
  }
}
