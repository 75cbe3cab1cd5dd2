/** common/logger.ts: redaction of secrets and token fields, and the lazy logger workers use. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger, lazyLogger, redactingStream } from '../common/logger.js';

const capture = () => {
  const lines: Array<Record<string, unknown>> = [];
  return { lines, stream: { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) } };
};

test('a secret never reaches the sink, in any field or message; token fields are redacted by name', () => {
  const { lines, stream } = capture();
  const secret = '123456:SECRET-not-a-real-token';
  const log = createLogger(redactingStream((l) => stream.write(l), () => [secret]), 'info', { botId: 'b1' });
  log.info({ detail: `failed calling /bot${secret}/getMe` }, `error with ${secret} inside`);
  log.info({ bot: { token: 'plain-token-field' } }, 'by name');
  assert.equal(lines.length, 2);
  assert.ok(!JSON.stringify(lines).includes(secret));
  assert.equal((lines[1]!.bot as { token: string }).token, '[redacted]');
  assert.equal(lines[0]!.botId, 'b1');
});

test('lazy logger: nothing is created for calls below its level, child() or flush; the first real call creates it once with the bindings', () => {
  const { lines, stream } = capture();
  let created = 0;
  const root = lazyLogger('warn', () => (created++, createLogger(stream, 'warn')));
  root.info('dropped');
  root.debug({ a: 1 }, 'dropped');
  root.flush();
  const child = root.child({ botId: 'b7' });
  assert.equal(root.isLevelEnabled('info'), false);
  assert.equal(root.isLevelEnabled('error'), true);
  assert.equal(root.level, 'warn');
  assert.equal(created, 0, 'pino not created yet');
  child.warn({ n: 1 }, 'kept');
  child.error('kept too');
  assert.equal(created, 1, 'created once for the child chain');
  assert.deepEqual(lines.map((l) => [l.msg, l.botId, l.level]), [['kept', 'b7', 40], ['kept too', 'b7', 50]]);
  root.warn('from the root');
  assert.equal(lines.at(-1)!.botId, undefined);
  assert.equal(created, 1);
});

test('lazy logger: setting the level creates it, and the new level applies', () => {
  const { lines, stream } = capture();
  const log = lazyLogger('warn', () => createLogger(stream, 'warn'));
  log.level = 'debug';
  log.debug('now visible');
  assert.deepEqual(lines.map((l) => l.msg), ['now visible']);
});
