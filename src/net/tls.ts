import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import { createSecureContext, type SecureContextOptions } from 'node:tls';

/** The TLS settings of a config that this module reads (config/schema.ts validates them). */
export interface TlsSettings {
  readonly listen: {
    readonly tls?: { cert: string; key: string; ca?: string | undefined; clientCertificates: 'none' | 'request' | 'require'; minVersion: 'TLSv1.2' | 'TLSv1.3' } | undefined;
  };
  readonly upstreams: Readonly<Record<string, { url: string; tls?: { ca?: string | undefined; cert?: string | undefined; key?: string | undefined; servername?: string | undefined } | undefined }>>;
}

/** The main listener's TLS settings with the PEM text of its files. */
export interface ServerTls {
  readonly cert: string;
  readonly key: string;
  readonly ca: string | undefined;
  readonly clientCertificates: 'none' | 'request' | 'require';
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
}

/** What an `https://` upstream's connections are made with. */
export interface UpstreamTls {
  readonly ca: string | undefined;
  readonly cert: string | undefined;
  readonly key: string | undefined;
  /**
   * SNI and the name the certificate is checked against. Set for every https upstream:
   * left to Node, both would come from the client's Host header, which the gateway
   * forwards unchanged. Empty for an IP-literal URL (no SNI; the IP is checked).
   */
  readonly servername: string;
}

/** Every PEM file a config names, read at load (and so again on every reload). */
export interface TlsFiles {
  readonly listen: ServerTls | undefined;
  readonly upstreams: Readonly<Record<string, UpstreamTls>>;
}

/** The name an https upstream is reached and checked by: its URL's host; '' for an IP literal. */
export function defaultServername(url: URL): string {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return isIP(host) ? '' : host;
}

/** An https upstream with no `tls` settings: the system's CAs, no client certificate. */
export function plainUpstreamTls(url: URL): UpstreamTls {
  return { ca: undefined, cert: undefined, key: undefined, servername: defaultServername(url) };
}

type Path = ReadonlyArray<string | number>;
type Report = (path: Path, message: string) => void;
/**
 * Reads a PEM file: `full` its path, `path` the config key that names it. The disk by
 * default; a worker of `serve --workers` is handed what its primary read instead.
 */
export type ReadPem = (full: string, path: Path) => string;
const fromDisk: ReadPem = (full) => readFileSync(full, 'utf8');

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Reads one PEM file and checks that it holds what `kind` needs; undefined after a report. */
function readPem(file: string, at: Where, kind: 'certificate' | 'key', path: Path, report: Report): string | undefined {
  const full = isAbsolute(file) ? file : resolve(at.baseDir, file);
  let text: string;
  try {
    text = at.read(full, path);
  } catch (err) {
    report(path, `cannot read ${full}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return undefined;
  }
  try {
    if (kind === 'key') createSecureContext({ key: text });
    else {
      // createSecureContext takes a CA file without a single certificate in it silently.
      const blocks = text.match(PEM_CERT);
      if (blocks === null) throw new Error('no PEM certificate in it');
      for (const b of blocks) new X509Certificate(b);
    }
  } catch (err) {
    report(path, `${full} is not a usable PEM ${kind}: ${(err as Error).message}`);
    return undefined;
  }
  return text;
}

/** A certificate and the key that must belong to it: refused together when they do not match. */
function checkPair(cert: string, key: string, path: Path, report: Report): void {
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    report(path, `the key does not belong to the certificate: ${(err as Error).message}`);
  }
}

/** Where PEM files are read from: the config file's folder, and how. */
interface Where {
  readonly baseDir: string;
  readonly read: ReadPem;
}

function listenTls(cfg: TlsSettings, baseDir: Where, report: Report): ServerTls | undefined {
  const t = cfg.listen.tls;
  if (t === undefined) return undefined;
  const at = ['listen', 'tls'];
  if (t.clientCertificates !== 'none' && t.ca === undefined) report(at, `clientCertificates: ${t.clientCertificates} needs ca, the CA that signs client certificates`);
  const cert = readPem(t.cert, baseDir, 'certificate', [...at, 'cert'], report);
  const key = readPem(t.key, baseDir, 'key', [...at, 'key'], report);
  const ca = t.ca === undefined ? undefined : readPem(t.ca, baseDir, 'certificate', [...at, 'ca'], report);
  if (cert === undefined || key === undefined) return undefined;
  checkPair(cert, key, [...at, 'key'], report);
  return { cert, key, ca, clientCertificates: t.clientCertificates, minVersion: t.minVersion };
}

function upstreamTls(name: string, u: TlsSettings['upstreams'][string], baseDir: Where, report: Report): UpstreamTls | undefined {
  const url = new URL(u.url);
  const t = u.tls;
  const at = ['upstreams', name, 'tls'];
  if (url.protocol !== 'https:') {
    if (t !== undefined) report(at, 'tls applies to https:// upstreams only');
    return undefined;
  }
  if (t === undefined) return plainUpstreamTls(url);
  const servername = t.servername ?? defaultServername(url);
  if ((t.cert === undefined) !== (t.key === undefined)) report(at, 'a client certificate needs both cert and key');
  const ca = t.ca === undefined ? undefined : readPem(t.ca, baseDir, 'certificate', [...at, 'ca'], report);
  const cert = t.cert === undefined ? undefined : readPem(t.cert, baseDir, 'certificate', [...at, 'cert'], report);
  const key = t.key === undefined ? undefined : readPem(t.key, baseDir, 'key', [...at, 'key'], report);
  if (cert !== undefined && key !== undefined) checkPair(cert, key, [...at, 'key'], report);
  return { ca, cert, key, servername };
}

/**
 * Reads the PEM files of `listen.tls` and `upstreams.*.tls` (paths relative to `baseDir`,
 * the config file's folder) and checks each holds what it should, reporting a problem at
 * the key that names the file.
 */
export function readTlsFiles(cfg: TlsSettings, baseDir: string, report: Report, read: ReadPem = fromDisk): TlsFiles {
  const where: Where = { baseDir, read };
  const upstreams: Record<string, UpstreamTls> = {};
  for (const [name, u] of Object.entries(cfg.upstreams)) {
    const t = upstreamTls(name, u, where, report);
    if (t !== undefined) upstreams[name] = t;
  }
  return { listen: listenTls(cfg, where, report), upstreams };
}

/**
 * A {@link ReadPem} that answers from PEM contents already read (`files`, as a parsed
 * config holds them), by the config key naming each file: what a primary read, for its
 * workers, so that every process of one instance serves the same certificates.
 */
export function pemsFrom(files: TlsFiles): ReadPem {
  return (full, path) => {
    // ['listen', 'tls', field] or ['upstreams', name, 'tls', field]
    const field = path[path.length - 1] as 'cert' | 'key' | 'ca';
    const held = path[0] === 'listen' ? files.listen?.[field] : files.upstreams[String(path[1])]?.[field];
    if (typeof held !== 'string') throw new Error(`${full} was not read by the primary`);
    return held;
  };
}

/** Options of the main listener's secure context, also what a reload hands `setSecureContext`. */
export function serverContextOptions(t: ServerTls): SecureContextOptions & { requestCert: boolean; rejectUnauthorized: boolean } {
  return {
    cert: t.cert,
    key: t.key,
    ...(t.ca === undefined ? {} : { ca: t.ca }),
    minVersion: t.minVersion,
    requestCert: t.clientCertificates !== 'none',
    rejectUnauthorized: t.clientCertificates === 'require',
  };
}
