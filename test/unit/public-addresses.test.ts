import assert from 'node:assert/strict';
import { assertPublicEndpoint, isPublicAddress, PrivateAddressError, publicOnlyLookup } from '../../src/storage/public-addresses';

describe('public addresses (where export destinations may be)', () => {
  it('takes the public internet, IPv4 and IPv6', () => {
    for (const address of ['8.8.8.8', '1.1.1.1', '52.216.0.1', '172.32.0.1', '100.128.0.1', '2606:4700::1111', '::ffff:8.8.8.8']) {
      assert.equal(isPublicAddress(address), true, address);
    }
  });

  it('refuses loopback, private, link-local, shared, unspecified and multicast addresses, also written as IPv6', () => {
    const refused = ['127.0.0.1', '127.255.0.9', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1'];
    for (const address of [...refused, '::1', '::', 'fe80::1', 'fd00::1', 'fc00::1', 'ff02::1', '::ffff:10.0.0.1', '::FFFF:127.0.0.1']) {
      assert.equal(isPublicAddress(address), false, address);
    }
    assert.equal(isPublicAddress('not an address'), false);
  });

  it('refuses an IPv4 address that is not public when an IPv6 address carries it (NAT64, 6to4, IPv4-compatible)', () => {
    // On an IPv6-only host with DNS64 a name with only an A record resolves to 64:ff9b::<its IPv4 address>, and the
    // NAT64 gateway connects to that IPv4 address: 64:ff9b::a9fe:a9fe is the metadata service, 64:ff9b::a00:5 the VPC.
    for (const address of ['64:ff9b::a9fe:a9fe', '64:ff9b::7f00:1', '64:ff9b::a00:5', '64:ff9b::c0a8:101', '2002:7f00:1::1', '2002:a9fe:a9fe::1', '::7f00:1', '::a9fe:a9fe', '64:ff9b:1::808:808', '::ffff:0:a9fe:a9fe']) {
      assert.equal(isPublicAddress(address), false, address);
    }
    for (const address of ['64:ff9b::808:808', '2002:808:808::1']) assert.equal(isPublicAddress(address), true, address);
    assert.throws(() => assertPublicEndpoint('http://[64:ff9b::a9fe:a9fe]/latest'), PrivateAddressError);
  });

  it('checks an endpoint URL whose host is an IP literal, and leaves host names to the lookup', () => {
    assert.throws(() => assertPublicEndpoint('http://169.254.169.254/latest'), PrivateAddressError);
    assert.throws(() => assertPublicEndpoint('http://[::1]:9000'), PrivateAddressError);
    assert.doesNotThrow(() => assertPublicEndpoint('https://8.8.8.8'));
    assert.doesNotThrow(() => assertPublicEndpoint('http://localhost:9000'));
  });

  it('refuses a name that resolves inside without telling which address it resolves to', async () => {
    // The refusal reaches the tenant (the probe's answer, lastError): the server's own resolver must not become the
    // tenant's view of the operator's network (split-horizon names such as db.internal and their private addresses).
    const error = await new Promise<Error | null>((resolve) => publicOnlyLookup('localhost', {}, (failure) => resolve(failure)));
    assert.ok(error instanceof PrivateAddressError);
    assert.match(error.message, /^localhost resolves to an address that is not public; .*SNAPGRAPH_ALLOW_PRIVATE_DESTINATIONS/);
    assert.doesNotMatch(error.message, /127\.0\.0\.1|::1/);
  });
});
