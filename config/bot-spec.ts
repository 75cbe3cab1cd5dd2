/**
 * The child spec (OTP's term): what the lifecycle needs to run one bot. The registry
 * produces it from a row (token decrypted); only the master holds these.
 */

/** A bot's configured mode; `null` means "the master's default". */
export type BotModeSetting = 'polling' | 'webhook' | 'auto' | null;

/** One bot as configured, token decrypted. Only the master holds these. */
export interface BotSpec {
  id: string;
  name: string;
  token: string;
  mode: BotModeSetting;
  handler: string;
  settings: Record<string, unknown>;
  apiRoot: string | null;
  enabled: boolean;
}


/** A row that could not be turned into a {@link BotSpec}, with the reason (one line). */
export interface InvalidBot {
  id: string;
  name: string;
  enabled: boolean;
  reason: string;
}
