/**
 * The leader's download: bytes from a source into a BlobWriter, then the
 * commit. Where the bytes come from:
 *
 *   - unpinned URL, or no fleet token: one GET upstream (tags are resolved
 *     only upstream, never through peers);
 *   - pinned digest with a fleet token: peers first (peer/fleet.ts). A live
 *     holder is picked and its `/blobs/<digest>` fetched with the token, the
 *     same bounds as upstream (size cap, total deadline, minimum rate), no
 *     redirects. Without a holder, a back-to-source permit lets this host go
 *     upstream (at most FLEETQ_UPSTREAM_PER_DIGEST hosts at once); without a
 *     permit it waits for a holder. A peer that fails is reported and
 *     skipped for this pull, and the download goes on where it stopped
 *     (`Range: bytes=<received>-`, the hash state continues) from another
 *     peer or upstream. Bytes that do not verify at the commit (digest, or a
 *     body the store refuses) when a peer contributed: those peers are
 *     reported (`wrong-bytes`), skipped, and the pull starts again.
 *
 * While a pinned download of known size is written, a host that serves blobs
 * streams it to peers (`LocalBlobs.servePartial`) and announces itself as a
 * `partial` holder, with the hosts its bytes come through; at the commit it
 * becomes `complete` when the blob is stored as received.
 */
import type { Dispatcher } from 'undici';
import { fetchImage, type ImageResponse, type Milestone, type PullProgressReport } from '../fetch/fetch-image.js';
import { DownloadTimeoutError } from '../fetch/fetch-errors.js';
import { releaseReadBuffers } from '../fetch/read-ring.js';
import type { ImageAuth } from '../fetch/image-auth.js';
import type { Digest } from '../lib/digest.js';
import { errorMessage } from '../lib/errors.js';
import type { JobLog } from '../lib/lazy-log.js';
import { formatBytes, formatDuration } from '../lib/units.js';
import { BUSY_RETRY_AFTER_S } from '../peer/blob-server.js';
import { type FleetPeers, isPeerBusy, peerErrorReason, type PullMetrics } from '../peer/fleet.js';
import type { Holder } from '../peer/holders.js';
import type { LocalBlobs, PartialServing } from '../peer/local-blobs.js';
import { BlobWriter, type Committed } from '../store/blob-writer.js';
import type { StorePaths } from '../store/paths.js';
import { BodyRejectedError, DigestMismatchError } from '../store/store-errors.js';

export interface PullBodyDeps {
  paths: StorePaths;
  dispatcher: Dispatcher;
  qemuImg: string;
  maxImageSize: number;
  downloadTimeoutMs: number;
  /** FLEETQ_MIN_RATE bytes per FLEETQ_RATE_WINDOW, else the download is a stall (0 = off). */
  minRate?: number | undefined;
  rateWindowMs?: number | undefined;
  userAgent?: string | undefined;
  /** The host's image credential store (FLEETQ_IMAGE_AUTH_FILE): headers for the URL's origin (upstream only). */
  imageAuth?: ImageAuth | undefined;
  /** Peer fetching (the worker has a fleet token). */
  fleet?: FleetPeers | undefined;
  /** Serving to peers (FLEETQ_PEER_LISTEN): partial downloads and holder announcements. */
  local?: LocalBlobs | undefined;
  pullMetrics?: PullMetrics | undefined;
}

export interface PullRequest {
  url: string;
  expectDigest?: Digest | undefined;
  signal: AbortSignal;
  fence: () => Promise<boolean>;
  /** A line for the job's log. */
  say: (line: string) => void;
  log: JobLog;
  onProgress?: ((p: PullProgressReport) => void) | undefined;
  onMilestone?: ((percent: Milestone, p: PullProgressReport) => void) | undefined;
}

export interface PulledBody {
  done: Committed;
  /** The first bytes of the body (raw or qcow2, for the job log). */
  head: Buffer;
  /** Bytes received, by source, over every attempt. */
  fromUpstream: number;
  fromPeers: number;
  /** Seconds spent receiving bodies. */
  receiveSeconds: number;
}

/** Bytes that can never become this blob: digest mismatch, or a body the store refuses. */
function isContentError(err: unknown): boolean {
  return err instanceof DigestMismatchError || err instanceof BodyRejectedError;
}

export async function pullBody(d: PullBodyDeps, r: PullRequest): Promise<PulledBody> {
  const deadline = Date.now() + d.downloadTimeoutMs;
  const digest = r.expectDigest;
  // Unpinned URLs never go through peers: a tag is resolved only upstream.
  const fleet = digest ? d.fleet : undefined;
  const excluded = new Set<string>();
  const totals = { fromUpstream: 0, fromPeers: 0, receiveMs: 0 };
  for (;;) {
    const a = await Attempt.open(d, r, deadline, excluded, totals);
    try {
      if (fleet && digest) await a.fromFleet(fleet, digest);
      else await a.fromUpstream(undefined);
      const done = await a.writer.commit({ ref: r.url, fence: r.fence });
      // Announce `complete` (or withdraw the partial entry) before the download stops being served in progress.
      await d.local?.committed(done.blob.digest, done);
      a.serving?.complete();
      return { done, head: a.head, fromUpstream: totals.fromUpstream, fromPeers: totals.fromPeers, receiveSeconds: totals.receiveMs / 1000 };
    } catch (err) {
      await a.stopServing();
      if (fleet && digest && a.contributors.size > 0 && isContentError(err)) {
        const peers = [...a.contributors];
        for (const p of peers) {
          fleet.report(p, digest, 'wrong-bytes', errorMessage(err));
          excluded.add(p);
        }
        r.say(`the bytes from peer${peers.length > 1 ? 's' : ''} ${peers.join(', ')} did not verify as ${digest}: ${peers.length > 1 ? 'they are' : 'it is'} skipped, pulling again`);
        continue;
      }
      throw err;
    } finally {
      await a.writer.abort();
    }
  }
}

/** One try at the whole body, into one writer (a content error from a peer starts a new one). */
class Attempt {
  serving: PartialServing | undefined;
  private servingTried = false;
  /** Peers whose bytes are in this writer. */
  readonly contributors = new Set<string>();
  head = Buffer.alloc(0);
  /** The body's size, once a source said it. */
  private total: number | undefined;

  private constructor(
    private readonly d: PullBodyDeps,
    private readonly r: PullRequest,
    private readonly deadline: number,
    private readonly excluded: Set<string>,
    private readonly totals: { fromUpstream: number; fromPeers: number; receiveMs: number },
    readonly writer: BlobWriter,
  ) {
    // Every chunk before the last written one is hashed and on disk: its socket read buffer may be reused.
    writer.onWritten = releaseReadBuffers;
  }

  static async open(d: PullBodyDeps, r: PullRequest, deadline: number, excluded: Set<string>, totals: Attempt['totals']): Promise<Attempt> {
    const writer = await BlobWriter.create(d.paths, { source: r.url, maxBytes: d.maxImageSize, expectDigest: r.expectDigest, qemuImg: d.qemuImg, signal: r.signal });
    return new Attempt(d, r, deadline, excluded, totals, writer);
  }

  private remainingMs(): number {
    return this.deadline - Date.now();
  }

  private checkDeadline(): void {
    if (this.remainingMs() <= 0) {
      throw new DownloadTimeoutError(`download of ${this.r.url} did not finish within ${this.d.downloadTimeoutMs / 1000}s (peers and upstream together)`, { settings: ['downloadTimeoutMs'] });
    }
  }

  /** End the partial serving (open responses end short) and withdraw the partial entry, before any permit is released. */
  async stopServing(): Promise<void> {
    const s = this.serving;
    this.serving = undefined;
    await s?.abort();
  }

  /**
   * Peers first; upstream with a back-to-source permit (or when this host does not serve and nobody holds it); else
   * wait for a holder. A holder that answers 503 (busy: its stream slots are taken) is skipped until its mark expires
   * or the digest's holders change, and never makes this host go upstream: with only busy holders left it waits.
   */
  async fromFleet(fleet: FleetPeers, digest: Digest): Promise<void> {
    let permit: Awaited<ReturnType<FleetPeers['tryPermit']>>;
    let waitingSince: number | undefined;
    /** Holders that said busy, and until when they are skipped (a holders-changed message clears them all). */
    const busy = new Map<string, number>();
    try {
      for (;;) {
        this.r.signal.throwIfAborted();
        this.checkDeadline();
        const waiter = fleet.watch(digest);
        let holder: Holder | undefined;
        try {
          await waiter.ready;
          const now = Date.now();
          for (const [h, until] of busy) if (until <= now) busy.delete(h);
          const skip = new Set(busy.keys());
          let look = await fleet.look(digest, this.excluded, skip);
          holder = look.holder;
          if (!holder && look.busy === 0 && !permit && fleet.serves) {
            permit = await fleet.tryPermit(digest);
            if (permit) {
              // A holder may have appeared while the permit was asked for (one that just released it): no GET then.
              look = await fleet.look(digest, this.excluded, skip);
              holder = look.holder;
              if (holder || look.busy > 0) {
                await permit.release();
                permit = undefined;
              }
            }
          }
          const allBusy = !holder && look.busy > 0;
          if (!holder && (allBusy || (!permit && fleet.serves))) {
            if (waitingSince === undefined) {
              waitingSince = Date.now();
              if (allBusy) {
                this.r.log.info({ digest: digest.value, busy: look.busy }, 'waiting for a peer: every holder is busy');
                this.r.say(`waiting for a peer: ${look.busy === 1 ? 'the holder' : `all ${look.busy} holders`} of ${digest} ${look.busy === 1 ? 'is' : 'are'} streaming to as many peers as ${look.busy === 1 ? 'it' : 'they'} may`);
              } else {
                this.r.log.info({ digest: digest.value, upstreamPerDigest: fleet.perDigest }, 'waiting for a peer: the back-to-source permits are taken');
                this.r.say(`waiting for a peer: ${fleet.perDigest} host${fleet.perDigest > 1 ? 's' : ''} of the fleet download${fleet.perDigest > 1 ? '' : 's'} ${digest} from upstream at once`);
              }
            }
            const untilMark = allBusy ? Math.min(...busy.values()) - Date.now() : Infinity;
            if ((await fleet.waitForChange(waiter, Math.min(this.remainingMs(), untilMark), this.r.signal)) === 'changed') busy.clear();
            continue;
          }
        } finally {
          waiter.cancel();
        }
        if (waitingSince !== undefined) {
          const secs = (Date.now() - waitingSince) / 1000;
          this.d.pullMetrics?.backToSourceWait(secs);
          this.r.say(`waited ${formatDuration(secs * 1000)} for ${holder ? `peer ${holder.host}` : 'a back-to-source permit'}`);
          waitingSince = undefined;
        }
        if (holder) {
          const got = await this.fromPeer(fleet, digest, holder);
          if (got === 'done') return;
          // Busy: skipped for about the server's Retry-After (jittered, so the waiters do not come back together).
          if (got === 'busy') busy.set(holder.host, Date.now() + BUSY_RETRY_AFTER_S * 1000 * (0.5 + Math.random() / 2));
          continue; // skipped or busy: another peer, or upstream
        }
        await this.fromUpstream(permit?.signal);
        return;
      }
    } catch (err) {
      await this.stopServing();
      throw err;
    } finally {
      await permit?.release();
    }
  }

  /** 'done' when the body is complete; 'failed' when the peer failed (reported, excluded); 'busy' when it answered 503. */
  private async fromPeer(fleet: FleetPeers, digest: Digest, h: Holder): Promise<'done' | 'failed' | 'busy'> {
    const offset = this.writer.received;
    let res: ImageResponse;
    try {
      res = await fetchImage({
        url: fleet.blobUrl(h, digest),
        dispatcher: fleet.dispatcher,
        headers: fleet.authHeaders,
        rangeStart: offset,
        partialOnly: true,
        totalTimeoutMs: this.remainingMs(),
        minRate: this.d.minRate ?? 0,
        rateWindowMs: this.d.rateWindowMs ?? 30_000,
        signal: this.r.signal,
        onProgress: this.r.onProgress,
        onMilestone: this.r.onMilestone,
        userAgent: this.d.userAgent,
      });
    } catch (err) {
      if (isPeerBusy(err) && !this.r.signal.aborted) {
        fleet.reportBusy(h.host, digest);
        return 'busy';
      }
      return this.peerFailed(fleet, digest, h, err, 'request');
    }
    const total = res.totalLength;
    const wrongSize =
      total === null
        ? 'sent no length'
        : this.total !== undefined && total !== this.total
          ? `says ${total} bytes where ${this.total} were announced`
          : h.size !== undefined && h.size !== total
            ? `says ${total} bytes where its holder entry says ${h.size}`
            : undefined;
    if (wrongSize !== undefined || total === null) {
      res.destroy();
      fleet.report(h.host, digest, 'wrong-bytes', wrongSize ?? 'no length');
      this.excluded.add(h.host);
      return 'failed';
    }
    try {
      this.writer.expectLength(total);
    } catch (err) {
      res.destroy();
      fleet.report(h.host, digest, 'wrong-bytes', errorMessage(err));
      this.excluded.add(h.host);
      return 'failed';
    }
    this.total = total;
    this.contributors.add(h.host);
    this.r.log.info({ digest: digest.value, peer: h.host, peerState: h.state, offset, total }, 'pulling from peer');
    this.r.say(`receiving ${formatBytes(total - offset)} from peer ${h.host} (${h.state === 'partial' ? 'still downloading it' : 'has it'})${offset > 0 ? `, resuming at byte ${offset}` : ''}`);
    await this.offerPartial(digest, total, [h.host, ...(h.chain ?? [])]);
    try {
      await this.receive(res, 'peer');
      return 'done';
    } catch (err) {
      return this.peerFailed(fleet, digest, h, err, 'body');
    }
  }

  private peerFailed(fleet: FleetPeers, digest: Digest, h: Holder, err: unknown, phase: 'request' | 'body'): 'failed' {
    const reason = this.r.signal.aborted ? undefined : peerErrorReason(err, phase);
    if (!reason) throw err;
    fleet.report(h.host, digest, reason, errorMessage(err));
    this.r.say(`peer ${h.host} failed (${reason}: ${errorMessage(err)}) after ${formatBytes(this.writer.received)}: skipped for this pull`);
    this.excluded.add(h.host);
    return 'failed';
  }

  /** One GET upstream, from where the writer stands (a resumed one asks for the rest with Range). */
  async fromUpstream(permitSignal: AbortSignal | undefined): Promise<void> {
    const { d, r } = this;
    const offset = this.writer.received;
    const digest = r.expectDigest;
    const res = await fetchImage({
      url: r.url,
      dispatcher: d.dispatcher,
      totalTimeoutMs: Math.max(1, this.remainingMs()),
      minRate: d.minRate ?? 0,
      rateWindowMs: d.rateWindowMs ?? 30_000,
      signal: permitSignal ? AbortSignal.any([r.signal, permitSignal]) : r.signal,
      onProgress: r.onProgress,
      onMilestone: r.onMilestone,
      userAgent: d.userAgent,
      headers: d.imageAuth?.headersFor(r.url),
      rangeStart: offset,
    });
    try {
      if (offset === 0) {
        r.say(res.declaredLength !== null ? `receiving ${formatBytes(res.declaredLength)}` : `receiving, size unknown (${res.framing}): progress stays at 0% until the body ends`);
        if (res.framing === 'close' && !digest) {
          // Only a pin can tell a body cut short from a complete one when the server just closes the connection.
          throw new BodyRejectedError(
            `${res.shownUrl} sent neither Content-Length nor chunked encoding, so a cut body would look complete; refusing it unpinned (pin the digest with --digest to pull from this server)`,
          );
        }
      } else {
        if (this.total !== undefined && res.totalLength !== null && res.totalLength !== this.total) {
          throw new BodyRejectedError(`${res.shownUrl} is ${res.totalLength} bytes, but the bytes received so far were announced as ${this.total}`);
        }
        r.say(`resuming from upstream at byte ${offset}${res.status === 206 ? '' : ' (the server ignored Range: skipping the bytes already received)'}`);
      }
      this.writer.expectLength(res.totalLength);
      if (res.totalLength !== null) this.total ??= res.totalLength;
      if (digest && res.totalLength !== null) await this.offerPartial(digest, res.totalLength, []);
    } catch (err) {
      res.destroy();
      throw err;
    }
    await this.receive(res, 'upstream');
  }

  /** Serve this download to peers while it is written (pinned, known size, a host that serves). */
  private async offerPartial(digest: Digest, total: number, chain: readonly string[]): Promise<void> {
    if (!this.d.local || total <= 0) return;
    if (!this.servingTried) {
      this.servingTried = true;
      this.serving = await this.d.local.servePartial(this.writer, digest, total);
    }
    this.serving?.announce(chain);
  }

  private async receive(res: ImageResponse, source: 'upstream' | 'peer'): Promise<void> {
    const started = performance.now();
    let n = 0;
    try {
      for await (const chunk of res.chunks()) {
        if (this.head.length < 4) this.head = Buffer.concat([this.head, chunk.subarray(0, 4 - this.head.length)]);
        n += chunk.length;
        await this.writer.write(chunk);
      }
    } finally {
      res.destroy();
      this.totals.receiveMs += performance.now() - started;
      if (source === 'peer') this.totals.fromPeers += n;
      else this.totals.fromUpstream += n;
      if (n > 0) this.d.pullMetrics?.bytes(source, this.r.expectDigest?.value ?? 'unpinned', n);
    }
  }
}
