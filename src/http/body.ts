import type { IncomingMessage } from 'node:http';
import { GatewayError } from './problem.js';

/**
 * Reads a small JSON object body (the gateway's own endpoints and the admin API). An empty
 * body is `{}`; more than `maxBytes`, invalid JSON or a non-object is 400 `bad-request`.
 */
export function readJsonObject(req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        req.off('data', onData);
        // Keep reading (and discarding) so the response can still be written.
        req.resume();
        reject(new GatewayError('bad-request', `The request body is larger than ${maxBytes} bytes.`));
      } else chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => {
      if (size > maxBytes) return;
      if (size === 0) return resolve({});
      try {
        const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
        resolve(v as Record<string, unknown>);
      } catch {
        reject(new GatewayError('bad-request', 'The request body must be a JSON object.'));
      }
    });
    req.on('error', reject);
  });
}
