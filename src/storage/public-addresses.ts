// Keeps a tenant's export destination (an S3 endpoint the tenant names) on the public internet. A tenant's ADMIN is not
// the operator: without this, a destination at http://169.254.169.254 (a cloud's metadata service), at localhost or at
// a private address made the server send requests into its own network on the tenant's behalf, and the probe of
// createExportDestination told the tenant what answered there. Checked where the address is known: an IP literal when
// the destination is registered and when it is used, a host name at every connection (its DNS may change, to a private
// address, after it was registered).
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/** Loopback, private, link-local, shared (CGNAT), unspecified, multicast and reserved ranges, IPv4 and IPv6. */
const NOT_PUBLIC = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 3],
] as const) {
  NOT_PUBLIC.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['::ffff:0:0:0', 96], // IPv4-translated (SIIT)
  ['64:ff9b:1::', 48], // NAT64 for a network's own use (RFC 8215)
  ['100::', 64], // discard-only
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  NOT_PUBLIC.addSubnet(network, prefix, 'ipv6');
}

/**
 * IPv6 prefixes whose addresses carry an IPv4 address that a connection ends up at, and where in the address it is
 * (16-bit groups): a host with DNS64 resolves a name with only an A record to 64:ff9b::<its IPv4 address>, and the
 * NAT64 gateway then connects to that IPv4 address, inside the network too (64:ff9b::a9fe:a9fe is 169.254.169.254).
 */
const CARRYING_IPV4: { network: string; prefix: number; group: number }[] = [
  { network: '::ffff:0:0', prefix: 96, group: 6 }, // IPv4-mapped
  { network: '64:ff9b::', prefix: 96, group: 6 }, // NAT64, well-known prefix
  { network: '::', prefix: 96, group: 6 }, // IPv4-compatible (deprecated)
  { network: '2002::', prefix: 16, group: 1 }, // 6to4
];
const CARRIERS = CARRYING_IPV4.map(({ network, prefix, group }) => {
  const list = new BlockList();
  list.addSubnet(network, prefix, 'ipv6');
  return { list, group };
});

/** Whether an IP address is one of the public internet's. */
export function isPublicAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 4) return !NOT_PUBLIC.check(address, 'ipv4');
  if (NOT_PUBLIC.check(address, 'ipv6')) return false;
  // An IPv4 address written as IPv6 is the IPv4 address.
  const carrier = CARRIERS.find(({ list }) => list.check(address, 'ipv6'));
  if (!carrier) return true;
  const groups = ipv6Groups(address);
  const ipv4 = [groups[carrier.group] >> 8, groups[carrier.group] & 0xff, groups[carrier.group + 1] >> 8, groups[carrier.group + 1] & 0xff].join('.');
  return !NOT_PUBLIC.check(ipv4, 'ipv4');
}

/** The eight 16-bit groups of a valid IPv6 address (`::` expanded, a dotted IPv4 tail as two groups). */
function ipv6Groups(address: string): number[] {
  const dotted = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  const text = dotted ? `${dotted[1]}${((+dotted[2] << 8) | +dotted[3]).toString(16)}:${((+dotted[4] << 8) | +dotted[5]).toString(16)}` : address;
  const [head, tail] = text.split('::') as [string, string | undefined];
  const parse = (part: string | undefined) => (part ? part.split(':').map((group) => parseInt(group, 16)) : []);
  const first = parse(head);
  const last = parse(tail);
  return tail === undefined ? first : [...first, ...new Array<number>(8 - first.length - last.length).fill(0), ...last];
}

/**
 * A destination refused for where it is. The tenant reads this message (the probe's answer, lastError), so a host name's
 * address is never in it: the server's resolver knows the operator's own names (split-horizon DNS, db.internal), and
 * their private addresses are not the tenant's to learn.
 */
export class PrivateAddressError extends Error {
  override readonly name = 'PrivateAddressError';
  readonly code = 'EPRIVATEADDRESS';
  /** @param address the IP literal refused, or undefined for a host name that resolved to a non-public address */
  constructor(host: string, address?: string) {
    super(
      `${host} ${address === undefined ? 'resolves to an address that is not public' : 'is not a public address'}; destinations must be public ` +
        'unless the operator sets SNAPGRAPH_ALLOW_PRIVATE_DESTINATIONS=true',
    );
  }
}

/** Refuses an endpoint URL whose host is an IP literal that is not public; a host name is checked when connecting. */
export function assertPublicEndpoint(endpoint: string): void {
  const host = new URL(endpoint).hostname.replace(/^\[(.*)\]$/, '$1');
  if (isIP(host) !== 0 && !isPublicAddress(host)) throw new PrivateAddressError(host, host);
}

/** dns.lookup for sockets (http.Agent's `lookup`), failing the connection when the name resolves to a non-public address. */
export const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
    if (error) return callback(error, '', 0);
    if (addresses.some(({ address }) => !isPublicAddress(address))) return callback(new PrivateAddressError(hostname) as NodeJS.ErrnoException, '', 0);
    if (options.all) return (callback as unknown as (error: null, addresses: LookupAddress[]) => void)(null, addresses);
    callback(null, addresses[0].address, addresses[0].family);
  });
};
