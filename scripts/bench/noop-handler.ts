/** Benchmark handler: registers nothing, so every update settles at once and is acked without a reply. */
export default function setup(): void {}
