/**
 * The worker's peer server from its configuration: fleet token (or its
 * file), TLS files, the listen address, what it serves (the worker's
 * LocalBlobs: verified blobs and downloads in progress), and the address advertised in the
 * host registry (FLEETQ_PEER_ADVERTISE, default: the listen host with the
 * bound port). Called only when FLEETQ_PEER_LISTEN is set; every problem is a
 * ConfigError listing its settings (the worker shows their variables).
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Digest } from '../lib/digest.js';
import { ConfigError, errorMessage } from '../lib/errors.js';
import type { StorePaths } from '../store/paths.js';
import { type BlobSource, committedBlobs } from './blob-source.js';
import { type BlobServer, startBlobServer } from './blob-server.js';
import { loadPeerToken } from './peer-token.js';

type HostPort = { host: string; port: number };
export type PeerConfig = Pick<Config, 'peerAdvertise' | 'peerToken' | 'peerTokenFile' | 'peerMaxRate' | 'peerMaxStreams' | 'peerTlsCert' | 'peerTlsKey'> & { peerListen: HostPort };

export interface PeerServer {
  server: BlobServer;
  /** What goes into the host registry: `http(s)://host:port`. */
  advertisedUrl: string;
  close(): Promise<void>;
}

const hostPart = (h: string) => (h.includes(':') ? `[${h}]` : h);

export function advertisedUrl(advertise: HostPort | undefined, listen: HostPort, boundPort: number, tls: boolean): string {
  const a = advertise ?? { host: listen.host, port: boundPort };
  return `${tls ? 'https' : 'http'}://${hostPart(a.host)}:${a.port}`;
}

function readTlsFile(path: string, setting: 'peerTlsCert' | 'peerTlsKey'): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`invalid peer TLS file: ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`, undefined, { settings: [setting] });
  }
}

export interface PeerServerExtras {
  /** What is served (default: committed blobs that hash to their name). The worker passes LocalBlobs.source(). */
  source?: BlobSource | undefined;
  /** The streaming-response count, on change (the serving load). */
  onLoad?: ((open: number) => void) | undefined;
  /** A slot freed after a request for the digest was turned away (busy). */
  onFreed?: ((digest: Digest) => void) | undefined;
  /** The fleet token, when already loaded (else read from the configuration). */
  token?: string | undefined;
}

export async function startPeerServer(cfg: PeerConfig, paths: StorePaths, log: Logger, extras: PeerServerExtras = {}): Promise<PeerServer> {
  const token = extras.token ?? loadPeerToken(cfg.peerToken, cfg.peerTokenFile);
  const tls = cfg.peerTlsCert && cfg.peerTlsKey ? { cert: readTlsFile(cfg.peerTlsCert, 'peerTlsCert'), key: readTlsFile(cfg.peerTlsKey, 'peerTlsKey') } : undefined;
  let server: BlobServer;
  try {
    server = await startBlobServer({ ...cfg.peerListen, token, maxRate: cfg.peerMaxRate, maxStreams: cfg.peerMaxStreams, tls, source: extras.source ?? committedBlobs(paths), log, onLoad: extras.onLoad, onFreed: extras.onFreed });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EADDRNOTAVAIL' || code === 'EACCES' || code === 'ENOTFOUND') {
      throw new ConfigError(`the peer server cannot listen on ${hostPart(cfg.peerListen.host)}:${cfg.peerListen.port} (${code})`, undefined, { settings: ['peerListen'] });
    }
    if (tls) throw new ConfigError(`the peer server's TLS certificate or key is unusable: ${errorMessage(err)}`, undefined, { settings: ['peerTlsCert', 'peerTlsKey'] });
    throw err;
  }
  const url = advertisedUrl(cfg.peerAdvertise, cfg.peerListen, server.port, server.tls);
  log.info({ listen: `${hostPart(server.host)}:${server.port}`, advertised: url, tls: server.tls, maxRate: cfg.peerMaxRate, maxStreams: cfg.peerMaxStreams }, 'peer blob server listening');
  return { server, advertisedUrl: url, close: () => server.close() };
}
