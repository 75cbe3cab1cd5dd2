/**
 * The long poller (worker/polling.ts) against a fake Telegram behind its `call` port, with a
 * real lease gate on the machine's monotonic clock: near the cluster's deadline the update a
 * handler is still running is confirmed once it settles, before the deadline, so the next
 * owner does not get it again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import type { Update } from 'node-telegram-bot-api';
import { machineMonoMs } from '../common/mono.js';
import { createLeaseGate, LEASE_MARGIN_MS } from '../worker/lease.js';
import { createPolling, type BotCall } from '../worker/polling.js';
import { waitFor } from './helpers/wait.js';

test('near the cluster\'s deadline the poller lets a running handler settle, then confirms past its update while calls are still allowed', async () => {
  const until = machineMonoMs() + 1300; // one long poll of 1 s, then under a second left: no more long polls
  const lease = createLeaseGate(until);
  const calls: Array<{ offset?: number; timeout: number; limit?: number; at: number }> = [];
  let served = false;
  const stop = new AbortController();
  const call: BotCall = async <T>(method: string, params: object) => {
    assert.equal(method, 'getUpdates');
    calls.push({ ...(params as { offset?: number; timeout: number; limit?: number }), at: machineMonoMs() });
    if (!served) {
      served = true;
      return [{ update_id: 5, message: { message_id: 1, date: 0, chat: { id: 1, type: 'private' }, text: 'away' } }] as T;
    }
    return [] as T;
  };
  const polling = createPolling({
    call, timeoutSec: 25, signal: stop.signal, logger: pino({ level: 'silent' }),
    take(u: Update) {
      polling.track(u.update_id);
      setTimeout(() => polling.settle(u.update_id), 300); // a handler that takes 300 ms
    },
    waitForRoom: async () => undefined, describeError: () => ({ at: '', message: 'x' }) as never, recordError: () => undefined, tokenRejected: () => undefined, lease,
  });
  const running = polling.run();
  try {
    const confirmed = await waitFor(() => calls.find((c) => c.offset === 6), 5_000, 'a getUpdates confirming update 5');
    assert.ok(confirmed.at < until - LEASE_MARGIN_MS, `confirmed ${until - confirmed.at} ms before the deadline, outside the margin`);
    assert.equal(confirmed.timeout, 0, 'a short call, not a long poll');
    assert.equal(calls[0]!.timeout, 1, 'the first poll ended before the deadline');
    assert.ok(calls.every((c) => c.at < until - LEASE_MARGIN_MS), 'no call within the margin');
  } finally {
    stop.abort();
    await running;
  }
});

test('a poll that returns too near the cluster\'s deadline hands nothing over: its update stays with Telegram and is taken once the lease is renewed', async () => {
  const until = machineMonoMs() + 1300;
  const lease = createLeaseGate(until);
  const calls: Array<{ offset?: number; timeout: number }> = [];
  const taken: number[] = [];
  const stop = new AbortController();
  const update = { update_id: 7, message: { message_id: 1, date: 0, chat: { id: 1, type: 'private' }, text: 'late' } };
  const call: BotCall = async <T>(_method: string, params: object) => {
    calls.push(params as { offset?: number; timeout: number });
    if (calls.length === 1) {
      // The long poll's update arrives late in it: under 400 ms left for calls.
      await waitFor(() => lease.msLeft() < 400, 5_000, 'the lease running low');
      return [update] as T;
    }
    // Later polls: the update again while unconfirmed (Telegram's rule), nothing once confirmed past it.
    return ((params as { offset?: number }).offset ?? 0) > 7 ? ([] as T) : ([update] as T);
  };
  const polling = createPolling({
    call, timeoutSec: 25, signal: stop.signal, logger: pino({ level: 'silent' }),
    take(u: Update) {
      taken.push(u.update_id);
      polling.track(u.update_id);
      setImmediate(() => polling.settle(u.update_id));
    },
    waitForRoom: async () => undefined, describeError: () => ({ at: '', message: 'x' }) as never, recordError: () => undefined, tokenRejected: () => undefined, lease,
  });
  const running = polling.run();
  try {
    await waitFor(() => lease.msLeft() === 0, 5_000, 'the deadline passing');
    assert.deepEqual(taken, [], 'nothing handed over past the point where it could be confirmed');
    assert.ok(calls.every((c) => c.offset === undefined), 'nothing confirmed');
    lease.set(machineMonoMs() + 60_000); // the master renewed
    await waitFor(() => calls.some((c) => c.offset === 8), 5_000, 'the update taken and confirmed after the renewal');
    assert.deepEqual(taken, [7], 'taken once');
  } finally {
    stop.abort();
    await running;
  }
});
