/**
 * STATUS_AUTH: who may read the status server (and, with STATUS_ACTIONS, act through it).
 * `bearer:<token>` accepts `Authorization: Bearer <token>` (Prometheus' `authorization`
 * scrape setting, curl) and, so a browser's login prompt works, HTTP Basic with any user
 * and the token as password; `basic:<user>:<password>` accepts exactly that Basic pair
 * (RFC 7617). Comparisons are constant-time over SHA-256 digests (equal lengths whatever
 * was sent). Pure: no I/O.
 */
import crypto from 'node:crypto';
import net from 'node:net';

/** A parsed STATUS_AUTH. Never logged. */
export type StatusAuth = { kind: 'bearer'; token: string } | { kind: 'basic'; user: string; password: string };

/** Shortest secret accepted: a guessable one on a reachable port is no protection. */
export const MIN_SECRET_CHARS = 16;

/**
 * Parse STATUS_AUTH. @throws Error with a one-line reason that never repeats the secret
 */
export function parseStatusAuth(v: string): StatusAuth {
  const at = v.indexOf(':');
  const kind = at < 0 ? '' : v.slice(0, at);
  const rest = v.slice(at + 1);
  if (kind === 'bearer') {
    if (rest.length < MIN_SECRET_CHARS || /\s/.test(rest)) throw new Error(`STATUS_AUTH bearer token must be ${MIN_SECRET_CHARS}+ characters without spaces`);
    return { kind, token: rest };
  }
  if (kind === 'basic') {
    const sep = rest.indexOf(':');
    const user = sep < 0 ? '' : rest.slice(0, sep);
    const password = sep < 0 ? '' : rest.slice(sep + 1);
    if (user === '' || password.length < MIN_SECRET_CHARS) throw new Error(`STATUS_AUTH must be basic:<user>:<password> with a password of ${MIN_SECRET_CHARS}+ characters`);
    return { kind, user, password };
  }
  throw new Error('STATUS_AUTH must be bearer:<token> or basic:<user>:<password>');
}

const digest = (s: string) => crypto.createHash('sha256').update(s).digest();
const same = (a: string, b: string) => crypto.timingSafeEqual(digest(a), digest(b));

/** Whether an `Authorization` header value satisfies `auth`. Never throws on hostile input. */
export function authorized(header: string | undefined, auth: StatusAuth): boolean {
  if (typeof header !== 'string' || header.length > 4096) return false;
  const sp = header.indexOf(' ');
  if (sp < 0) return false;
  const scheme = header.slice(0, sp).toLowerCase();
  const value = header.slice(sp + 1).trim();
  if (scheme === 'bearer') return auth.kind === 'bearer' && same(value, auth.token);
  if (scheme !== 'basic') return false;
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  const sep = decoded.indexOf(':');
  if (sep < 0) return false;
  const user = decoded.slice(0, sep);
  const password = decoded.slice(sep + 1);
  // Both compared every time, so the answer's timing does not tell which was wrong.
  return auth.kind === 'bearer' ? same(password, auth.token) : same(user, auth.user) && same(password, auth.password);
}

/** Whether a listen address only this host can reach: 127.0.0.0/8, ::1 or `localhost`. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  const h = host.replace(/^\[|\]$/g, '');
  if (net.isIPv4(h)) return h.startsWith('127.');
  return h === '::1' || h.toLowerCase() === '::ffff:127.0.0.1';
}
