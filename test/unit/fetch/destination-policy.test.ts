/**
 * Destination policy: parsing FLEETQ_IMAGE_ALLOW, the pure decision, and the
 * guarded connector's resolve → check → connect-to-the-checked-IP step (with a
 * fake DNS and a fake socket connector: no network).
 */
import { messageWithSettings } from '../../../src/config/setting-hint.js';
import { describe, expect, it } from 'vitest';
import type { buildConnector } from 'undici';
import {
  type Destination,
  type DestinationPolicy,
  decideDestination,
  parseDestinationPolicy,
  REASON_METADATA,
  REASON_NOT_ALLOWED,
  REASON_REDIS,
  withRedisAddresses,
} from '../../../src/fetch/destination-policy.js';
import { DestinationRefusedError } from '../../../src/fetch/fetch-errors.js';
import { createGuardedConnector } from '../../../src/fetch/guarded-connector.js';
import { ConfigError } from '../../../src/lib/errors.js';

const policy = (allow?: string, redisUrl?: string, localAddresses: string[] = []) => parseDestinationPolicy(allow, { redisUrl, localAddresses });

function dest(url: string, address?: string): Destination {
  const u = new URL(url);
  const hostname = u.hostname.replace(/^\[|\]$/g, '');
  return { protocol: u.protocol, hostname, port: u.port, address: address ?? hostname };
}
const verdict = (p: DestinationPolicy, url: string, address?: string) => {
  const d = decideDestination(p, dest(url, address));
  return d.allowed ? 'allowed' : d.reason;
};

describe('parseDestinationPolicy: FLEETQ_IMAGE_ALLOW', () => {
  it('unset, empty or blank → no allow list', () => {
    expect(policy(undefined).allow).toBeUndefined();
    expect(policy('').allow).toBeUndefined();
    expect(policy(' , ').allow).toBeUndefined();
  });

  it('origins: scheme + normalised host + port (default ports filled in)', () => {
    expect(policy('https://IMG.example.com, http://127.0.0.1:8080 ,http://[::1]:9000/').allow).toEqual([
      { kind: 'origin', text: 'https://IMG.example.com', protocol: 'https:', hostname: 'img.example.com', port: 443 },
      { kind: 'origin', text: 'http://127.0.0.1:8080', protocol: 'http:', hostname: '127.0.0.1', port: 8080 },
      { kind: 'origin', text: 'http://[::1]:9000/', protocol: 'http:', hostname: '::1', port: 9000 },
    ]);
  });

  it('hosts, IP hosts and wildcards', () => {
    expect(policy('Img.Example.com.,10.1.2.3,[fd00::1],*.example.org').allow).toEqual([
      { kind: 'host', text: 'Img.Example.com.', hostname: 'img.example.com' },
      { kind: 'host', text: '10.1.2.3', hostname: '10.1.2.3' },
      { kind: 'host', text: '[fd00::1]', hostname: 'fd00::1' },
      { kind: 'wildcard', text: '*.example.org', suffix: '.example.org' },
    ]);
  });

  it('IPv4 and IPv6 CIDRs', () => {
    const allow = policy('10.0.0.0/8, fd00::/8, 127.0.0.1/32, ::/0').allow!;
    expect(allow.map((e) => (e.kind === 'cidr' ? `${e.network}/${e.prefix}` : e.kind))).toEqual(['10.0.0.0/8', 'fd00::/8', '127.0.0.1/32', '::/0']);
  });

  it.each([
    ['ftp://files.example.com', /scheme ftp: is not http: or https:/],
    ['https://img.example.com/images', /no path, query or fragment/],
    ['https://img.example.com?x=1', /no path, query or fragment/],
    ['https://user:pw@img.example.com', /credentials/],
    ['http://', /not a valid URL/],
    ['10.0.0.0/33', /prefix length \/33 is too long for IPv4/],
    ['fd00::/129', /prefix length \/129 is too long for IPv6/],
    ['10.0.0/8', /not a CIDR/],
    ['example.com/24', /not a CIDR/],
    ['*', /wildcard/],
    ['a.*.example.com', /wildcard must be the whole leftmost label/],
    ['*.10.0.0.1', /wildcard is \*\.domain/],
    ['img.example.com:8080', /has no port; write an origin/],
    ['img example.com', /not a valid hostname/],
    ['img_$.example.com', /not a valid hostname/],
  ])('bad entry %s → ConfigError naming the entry, and the imageAllow setting (shown as FLEETQ_IMAGE_ALLOW)', (entry, why) => {
    let err: unknown;
    try {
      policy(`https://ok.example.com,${entry},10.0.0.0/8`);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).settings).toEqual(['imageAllow']);
    expect((err as ConfigError).permanent).toBe(true);
    expect((err as Error).message).toContain(`invalid image allow-list entry ${JSON.stringify(entry)}`);
    expect((err as Error).message).not.toContain('FLEETQ_');
    expect(messageWithSettings(err as ConfigError)).toMatch(/ \(FLEETQ_IMAGE_ALLOW\)$/);
    expect((err as Error).message).toMatch(why);
  });
});

describe('decideDestination: always refused', () => {
  const open = policy(undefined);
  // Even an allow list that names them does not let these through.
  const permissive = policy('0.0.0.0/0,::/0,169.254.0.0/16,fe80::/10,http://169.254.169.254,169.254.169.254');

  it.each([
    ['http://169.254.169.254/latest/meta-data'],
    ['http://169.254.0.1/'],
    ['https://169.254.255.255:8443/'],
    ['http://[fe80::1]/'],
    ['http://[febf:ffff::1]/'],
    ['http://[::ffff:169.254.169.254]/'],
    ['http://[::ffff:a9fe:1]/'],
    ['http://[fd00:ec2::254]/'],
    ['http://100.100.100.200/'],
    ['http://168.63.129.16/'],
  ])('%s → link-local/metadata', (url) => {
    expect(verdict(open, url)).toBe(REASON_METADATA);
    expect(verdict(permissive, url)).toBe(REASON_METADATA);
  });

  it('a name that resolves to a metadata address is refused on the address', () => {
    expect(verdict(open, 'http://metadata.google.internal/', '169.254.169.254')).toBe(REASON_METADATA);
    expect(verdict(policy('*.internal'), 'http://metadata.google.internal/', '::ffff:169.254.169.254')).toBe(REASON_METADATA);
  });

  it('neighbours of the metadata ranges are not refused', () => {
    expect(verdict(open, 'http://169.253.255.255/')).toBe('allowed');
    expect(verdict(open, 'http://[fec0::1]/')).toBe('allowed');
    expect(verdict(open, 'http://[fd00:ec2::253]/')).toBe('allowed');
  });

  describe("fleetq's own Redis (host and port of REDIS_URL)", () => {
    const local = policy('127.0.0.0/8,::1/128,0.0.0.0/8,http://localhost:6379', 'redis://127.0.0.1:6379/0', ['192.168.7.9', 'fe80::9']);

    it.each([
      ['http://127.0.0.1:6379/'],
      ['http://127.0.0.2:6379/'],
      ['http://127.255.255.254:6379/'],
      ['http://[::1]:6379/'],
      ['http://[::ffff:127.0.0.1]:6379/'],
      ['http://0.0.0.0:6379/'],
      ['https://127.0.0.1:6379/'],
      ['http://192.168.7.9:6379/'], // this machine's own interface address
    ])('%s → refused (loopback aliases count as the Redis host)', (url) => {
      expect(verdict(local, url)).toBe(REASON_REDIS);
    });

    it('a name resolving to a loopback address, on the Redis port → refused', () => {
      expect(verdict(local, 'http://localhost:6379/', '::1')).toBe(REASON_REDIS);
      expect(verdict(local, 'http://anything.example:6379/', '127.0.0.1')).toBe(REASON_REDIS);
    });

    it('another port on the same host is only subject to the allow list', () => {
      expect(verdict(local, 'http://127.0.0.1:6380/')).toBe('allowed');
      expect(verdict(local, 'http://[::1]:80/')).toBe('allowed');
      expect(verdict(local, 'http://10.0.0.1:6379/')).toBe(REASON_NOT_ALLOWED);
    });

    it('a remote Redis by IP: that address and port only', () => {
      const p = policy(undefined, 'rediss://:secret@10.1.2.3:7000', ['192.168.7.9']);
      expect(verdict(p, 'http://10.1.2.3:7000/')).toBe(REASON_REDIS);
      expect(verdict(p, 'http://10.1.2.3:7001/')).toBe('allowed');
      expect(verdict(p, 'http://127.0.0.1:7000/')).toBe('allowed');
      expect(verdict(p, 'http://192.168.7.9:7000/')).toBe('allowed');
    });

    it('a Redis named by hostname: the name, then its resolved addresses (default port 6379)', () => {
      const p = policy(undefined, 'redis://Redis:6379', []);
      expect(verdict(p, 'http://redis:6379/', '172.18.0.2')).toBe(REASON_REDIS);
      expect(verdict(p, 'http://other:6379/', '172.18.0.2')).toBe('allowed');
      const resolved = withRedisAddresses(p, ['172.18.0.2']);
      expect(verdict(resolved, 'http://other:6379/', '172.18.0.2')).toBe(REASON_REDIS);
      expect(verdict(resolved, 'http://172.18.0.2:6379/')).toBe(REASON_REDIS);
      expect(verdict(resolved, 'http://172.18.0.2:80/')).toBe('allowed');
      expect(verdict(withRedisAddresses(policy(undefined, 'redis://redis'), ['127.0.0.1']), 'http://127.0.0.5:6379/')).toBe(REASON_REDIS);
      expect(verdict(policy(undefined, 'redis://localhost', []), 'http://127.0.0.1:6379/')).toBe(REASON_REDIS);
    });
  });
});

describe('decideDestination: FLEETQ_IMAGE_ALLOW', () => {
  it('no list: public and private addresses are allowed', () => {
    const p = policy(undefined, 'redis://127.0.0.1:6379');
    expect(verdict(p, 'https://img.example.com/a.qcow2', '93.184.216.34')).toBe('allowed');
    expect(verdict(p, 'http://10.0.0.5:8080/a')).toBe('allowed');
    expect(verdict(p, 'http://127.0.0.1:8080/a')).toBe('allowed');
  });

  it('origin entries: scheme, host and port must all match', () => {
    const p = policy('http://127.0.0.1:8080,https://img.example.com');
    expect(verdict(p, 'http://127.0.0.1:8080/x')).toBe('allowed');
    expect(verdict(p, 'http://127.0.0.1:8081/x')).toBe(REASON_NOT_ALLOWED);
    expect(verdict(p, 'https://127.0.0.1:8080/x')).toBe(REASON_NOT_ALLOWED);
    expect(verdict(p, 'http://localhost:8080/x', '127.0.0.1')).toBe(REASON_NOT_ALLOWED);
    expect(verdict(p, 'https://img.example.com/x', '93.184.216.34')).toBe('allowed');
    expect(verdict(p, 'https://img.example.com:443/x', '93.184.216.34')).toBe('allowed');
    expect(verdict(p, 'https://IMG.EXAMPLE.COM./x', '93.184.216.34')).toBe('allowed');
    expect(verdict(p, 'https://img.example.com:8443/x', '93.184.216.34')).toBe(REASON_NOT_ALLOWED);
    expect(verdict(p, 'http://img.example.com/x', '93.184.216.34')).toBe(REASON_NOT_ALLOWED);
  });

  it('host entries: the URL hostname, any port and scheme; IP hosts compared canonically', () => {
    const p = policy('img.example.com,10.1.2.3');
    expect(verdict(p, 'https://img.example.com:8443/x', '93.184.216.34')).toBe('allowed');
    expect(verdict(p, 'http://img.example.com/x', '93.184.216.34')).toBe('allowed');
    expect(verdict(p, 'http://cdn.img.example.com/x', '93.184.216.34')).toBe(REASON_NOT_ALLOWED);
    expect(verdict(p, 'http://[::ffff:10.1.2.3]/x')).toBe('allowed');
    expect(verdict(p, 'http://evil.example/x', '10.1.2.3')).toBe(REASON_NOT_ALLOWED); // a host entry names a host, not an address
  });

  it('wildcards: subdomains at any depth, not the domain itself or look-alikes', () => {
    const p = policy('*.example.com');
    expect(verdict(p, 'https://img.example.com/', '93.184.216.34')).toBe('allowed');
    expect(verdict(p, 'https://a.b.example.com/', '93.184.216.34')).toBe('allowed');
    expect(verdict(p, 'https://example.com/', '93.184.216.34')).toBe(REASON_NOT_ALLOWED);
    expect(verdict(p, 'https://badexample.com/', '93.184.216.34')).toBe(REASON_NOT_ALLOWED);
    expect(verdict(p, 'https://example.com.evil.net/', '93.184.216.34')).toBe(REASON_NOT_ALLOWED);
  });

  it('CIDR entries: the resolved address, whatever the name', () => {
    const p = policy('10.0.0.0/8,fd00::/8,127.0.0.1/32');
    expect(verdict(p, 'https://mirror.internal/x', '10.20.30.40')).toBe('allowed');
    expect(verdict(p, 'https://mirror.internal/x', '11.0.0.1')).toBe(REASON_NOT_ALLOWED);
    expect(verdict(p, 'http://[fd12::3]:8080/x')).toBe('allowed');
    expect(verdict(p, 'http://[fe00::3]:8080/x')).toBe(REASON_NOT_ALLOWED);
    expect(verdict(p, 'http://127.0.0.1:1234/x')).toBe('allowed');
    expect(verdict(p, 'http://127.0.0.2:1234/x')).toBe(REASON_NOT_ALLOWED);
    expect(verdict(p, 'http://[::ffff:10.0.0.1]/x')).toBe('allowed');
  });

  it('non-http(s) schemes are never allowed', () => {
    expect(decideDestination(policy(undefined), { protocol: 'ftp:', hostname: '10.0.0.1', port: 21, address: '10.0.0.1' })).toEqual({
      allowed: false,
      reason: 'scheme ftp: is not http: or https:',
    });
  });
});

describe('guarded connector: resolve, check every address, connect to the checked IP', () => {
  type Call = buildConnector.Options;
  function harness(p: DestinationPolicy, answers: Record<string, string[]>, fail: Record<string, string> = {}) {
    const lookups: string[] = [];
    const connects: Call[] = [];
    const connector = createGuardedConnector({
      policy: p,
      timeoutMs: 1000,
      lookup: async (name) => {
        lookups.push(name);
        const a = answers[name];
        if (!a) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
        return a.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
      },
      connector: (o, cb) => {
        connects.push(o);
        const code = fail[o.hostname];
        if (code) cb(Object.assign(new Error(`connect ${code} ${o.hostname}`), { code }), null);
        else cb(null, { fake: o.hostname } as never);
      },
    });
    const run = (o: Partial<Call> & { hostname: string }) =>
      new Promise<unknown>((resolve, reject) =>
        connector({ protocol: 'http:', port: '', host: o.hostname, ...o } as Call, (err, socket) => (err ? reject(err) : resolve(socket))),
      );
    return { run, lookups, connects };
  }

  it('a name resolving only to the metadata address is refused and nothing is connected', async () => {
    const h = harness(policy(undefined), { 'rebind.example': ['169.254.169.254'] });
    const err = await h.run({ hostname: 'rebind.example', port: '80' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DestinationRefusedError);
    expect((err as Error).message).toBe('destination refused by policy: rebind.example:80 via 169.254.169.254 (link-local/metadata address)');
    expect(h.connects).toEqual([]);
  });

  it('mixed answers: connects only to the allowed address, keeping the name for SNI', async () => {
    const h = harness(policy(undefined), { 'img.example.com': ['169.254.169.254', 'fe80::1', '93.184.216.34'] });
    await expect(h.run({ hostname: 'img.example.com', protocol: 'https:', host: 'img.example.com' })).resolves.toEqual({ fake: '93.184.216.34' });
    expect(h.connects).toHaveLength(1);
    expect(h.connects[0]).toMatchObject({ hostname: '93.184.216.34', servername: 'img.example.com', host: 'img.example.com', protocol: 'https:' });
  });

  it('IP literals skip DNS; refused ones never reach the socket connector', async () => {
    const h = harness(policy('http://127.0.0.1:8080', 'redis://127.0.0.1:6379'), {});
    await expect(h.run({ hostname: '127.0.0.1', port: '8080' })).resolves.toEqual({ fake: '127.0.0.1' });
    const refused = await h.run({ hostname: '127.0.0.1', port: '6379' }).catch((e: Error) => e.message);
    const other = await h.run({ hostname: '::1', port: '9' }).catch((e: Error) => e);
    expect(refused).toBe("destination refused by policy: 127.0.0.1:6379 (fleetq's own Redis)");
    // Not allowed: the error names the imageAllow setting, which the worker shows as its variable.
    expect(messageWithSettings(other as Error)).toBe('destination refused by policy: [::1]:9 (not in the image allow-list) (FLEETQ_IMAGE_ALLOW)');
    expect(h.lookups).toEqual([]);
    expect(h.connects.map((c) => `${c.hostname}:${c.port}`)).toEqual(['127.0.0.1:8080']);
    expect(h.connects[0]!.servername).toBeUndefined();
  });

  it('a refused connection to one allowed address falls through to the next allowed one', async () => {
    const h = harness(policy('10.0.0.0/8'), { mirror: ['10.0.0.1', '192.0.2.1', '10.0.0.2'] }, { '10.0.0.1': 'ECONNREFUSED' });
    await expect(h.run({ hostname: 'mirror' })).resolves.toEqual({ fake: '10.0.0.2' });
    expect(h.connects.map((c) => c.hostname)).toEqual(['10.0.0.1', '10.0.0.2']);
  });

  it("REDIS_URL naming a host: its addresses are resolved and refused on Redis's port", async () => {
    const h = harness(policy(undefined, 'redis://redis.svc:6379'), { 'redis.svc': ['10.9.9.9'], 'alias.example': ['10.9.9.9'] });
    const err = await h.run({ hostname: 'alias.example', port: '6379' }).catch((e: Error) => e.message);
    expect(err).toBe("destination refused by policy: alias.example:6379 via 10.9.9.9 (fleetq's own Redis)");
    expect(h.lookups.sort()).toEqual(['alias.example', 'redis.svc']);
    expect(h.connects).toEqual([]);
  });

  it('a Cluster or Sentinel: every seed node / sentinel is refused on its port, named ones resolved', async () => {
    const p = parseDestinationPolicy(undefined, { redis: [{ host: '10.0.0.5', port: 7000 }, { host: 'redis-2.svc', port: 7001 }, { host: 'redis-3.svc', port: 7002 }], localAddresses: [] });
    expect(verdict(p, 'http://10.0.0.5:7000/')).toBe(REASON_REDIS);
    expect(verdict(p, 'http://10.0.0.5:7001/')).toBe('allowed');
    const h = harness(p, { 'redis-2.svc': ['10.0.0.6'], 'redis-3.svc': ['10.0.0.7'], 'alias-2.example': ['10.0.0.6'], 'alias-3.example': ['10.0.0.7'] });
    for (const [alias, port, ip] of [['alias-2.example', '7001', '10.0.0.6'], ['alias-3.example', '7002', '10.0.0.7']] as const) {
      const err = await h.run({ hostname: alias, port }).catch((e: Error) => e.message);
      expect(err).toBe(`destination refused by policy: ${alias}:${port} via ${ip} (fleetq's own Redis)`);
    }
    // The same addresses on another node's port are not Redis.
    await expect(h.run({ hostname: 'alias-2.example', port: '7002' })).resolves.toEqual({ fake: '10.0.0.6' });
    expect([...new Set(h.lookups)].sort()).toEqual(['alias-2.example', 'alias-3.example', 'redis-2.svc', 'redis-3.svc']);
  });

  it('DNS failures pass through unchanged (transient network errors)', async () => {
    const h = harness(policy(undefined), {});
    await expect(h.run({ hostname: 'nowhere.invalid' })).rejects.toMatchObject({ code: 'ENOTFOUND' });
  });
});
