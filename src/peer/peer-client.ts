/**
 * The undici dispatcher for fetching blobs from peers. Unlike the upstream
 * client (fetch/http-client.ts) it follows no redirects (a 3xx from a peer is
 * a refusal) and ignores FLEETQ_IMAGE_ALLOW (that list is about image URLs;
 * peers come from the host registry), but keeps the destinations that are
 * always refused: link-local/metadata addresses and fleetq's own Redis. Plain
 * http reads go into the same reused buffers as upstream pulls; https trusts
 * the system's CAs plus the fleet's own certificate when this host has one
 * (FLEETQ_PEER_TLS_CERT: a fleet sharing one certificate needs no other set-up).
 */
import { rootCertificates } from 'node:tls';
import { Agent, type Dispatcher } from 'undici';
import { parseDestinationPolicy } from '../fetch/destination-policy.js';
import { createGuardedConnector } from '../fetch/guarded-connector.js';
import { createReadRingConnector } from '../fetch/read-ring.js';

export interface PeerClientOptions {
  /** Connect, headers and body idle timeout (FLEETQ_DOWNLOAD_IDLE_TIMEOUT). */
  idleTimeoutMs: number;
  /** fleetq's Redis: never a peer. */
  redisUrl: string;
  /** Extra PEM certificates to trust (the fleet's). */
  ca?: Buffer | undefined;
}

export function createPeerClient(o: PeerClientOptions): Dispatcher {
  const tls = o.ca ? { ca: [...rootCertificates, o.ca.toString('utf8')] } : {};
  return new Agent({
    connect: createGuardedConnector({
      policy: parseDestinationPolicy(undefined, { redisUrl: o.redisUrl }),
      timeoutMs: o.idleTimeoutMs,
      connector: createReadRingConnector(o.idleTimeoutMs, tls),
    }),
    headersTimeout: o.idleTimeoutMs,
    bodyTimeout: o.idleTimeoutMs,
  });
}
