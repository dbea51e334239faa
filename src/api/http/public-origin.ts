// The origin export links are built on. A request's Host header is the client's to choose, so it is trusted only
// when the operator listed it: otherwise anyone could make the server hand out links to a host of their choosing.
import type { AppConfig } from '../../config/app-config';

/**
 * SNAPGRAPH_PUBLIC_URL when set; else the request's Host when it is one of SNAPGRAPH_ALLOWED_HOSTS (with the scheme
 * listed there); else the first allowed host; else the address the server listens on.
 */
export function publicOrigin(config: Pick<AppConfig, 'publicUrl' | 'allowedHosts'>, listeningUrl: string, hostHeader: string | undefined): string {
  if (config.publicUrl) return config.publicUrl;
  const host = hostHeader?.trim().toLowerCase();
  const allowed = host ? config.allowedHosts.find((origin) => new URL(origin).host === host) : undefined;
  return allowed ?? config.allowedHosts[0] ?? listeningUrl;
}
