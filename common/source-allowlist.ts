/**
 * The optional source-address allowlist of the webhook server, on Node's own
 * `net.BlockList`. Telegram posts webhooks from 149.154.160.0/20 and 91.108.4.0/22
 * (https://core.telegram.org/bots/webhooks#the-short-version).
 */
import net from 'node:net';

/** Telegram's published webhook source ranges. */
export const TELEGRAM_SOURCES = ['149.154.160.0/20', '91.108.4.0/22'];

/**
 * A predicate for `cidrs` (IPv4 or IPv6, `a.b.c.d/n` or a bare address), or null when
 * the list is empty (everyone allowed). IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is matched as IPv4.
 * @throws Error naming the bad entry
 */
export function sourceAllowlist(cidrs: string[]): ((ip: string) => boolean) | null {
  if (cidrs.length === 0) return null;
  const list = new net.BlockList();
  for (const raw of cidrs) {
    const c = raw.trim() === 'telegram' ? TELEGRAM_SOURCES : [raw.trim()];
    for (const entry of c) {
      const [addr = '', bits] = entry.split('/');
      const type = net.isIPv6(addr) ? 'ipv6' : net.isIPv4(addr) ? 'ipv4' : null;
      const prefix = bits === undefined ? (type === 'ipv6' ? 128 : 32) : Number(bits);
      if (type === null || !Number.isInteger(prefix) || prefix < 0 || prefix > (type === 'ipv6' ? 128 : 32)) throw new Error(`not an address or CIDR range: "${entry}"`);
      list.addSubnet(addr, prefix, type);
    }
  }
  return (ip) => {
    const v4 = ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
    return list.check(v4, net.isIPv6(v4) ? 'ipv6' : 'ipv4');
  };
}
