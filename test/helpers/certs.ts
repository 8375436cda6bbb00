import { execFileSync } from 'node:child_process';
import https from 'node:https';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** PEM files made by openssl in a temp folder: a private CA and what it signed. */
export interface TestPki {
  dir: string;
  /** Paths of the files (`<name>.pem` certificate, `<name>.key` key). */
  path(name: string, ext: 'pem' | 'key'): string;
  read(name: string, ext: 'pem' | 'key'): string;
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function ca(dir: string, name: string): void {
  openssl(dir, 'req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`);
}

/** A leaf certificate for `name`, signed by `by`, for a server (127.0.0.1, localhost) or a client. */
function leaf(dir: string, name: string, by: string, usage: 'serverAuth' | 'clientAuth'): void {
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `basicConstraints=CA:FALSE\nextendedKeyUsage=${usage}\n${usage === 'serverAuth' ? 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' : ''}`);
  openssl(dir, 'req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
  openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${by}.pem`, '-CAkey', `${by}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', ext);
}

/**
 * `ca` signs `server`, `server2` (a rotation), `client` and `upstream`; `other-ca` is a CA
 * nobody trusts, signing `stranger` (a client) and `impostor` (a server).
 */
export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-pki-'));
  ca(dir, 'ca');
  ca(dir, 'other-ca');
  leaf(dir, 'server', 'ca', 'serverAuth');
  leaf(dir, 'server2', 'ca', 'serverAuth');
  leaf(dir, 'upstream', 'ca', 'serverAuth');
  leaf(dir, 'client', 'ca', 'clientAuth');
  leaf(dir, 'stranger', 'other-ca', 'clientAuth');
  leaf(dir, 'impostor', 'other-ca', 'serverAuth');
  const path = (name: string, ext: 'pem' | 'key') => join(dir, `${name}.${ext}`);
  return { dir, path, read: (name, ext) => readFileSync(path(name, ext), 'utf8') };
}

export interface Answer { status: number; cn: string | undefined; protocol: string | null }

/** One request on a new TLS connection, with the client's own certificate when given. */
export function httpsGet(url: string, opts: https.RequestOptions & Pick<ConnectionOptions, 'ALPNProtocols'>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.get(url + '/hello', { agent: false, ...opts }, (res) => {
      const sock = res.socket as TLSSocket;
      const cn = sock.getPeerCertificate().subject?.CN;
      const protocol = sock.alpnProtocol || null;
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, cn: Array.isArray(cn) ? cn[0] : cn, protocol }));
    });
    req.on('error', reject);
  });
}
