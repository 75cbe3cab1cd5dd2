/**
 * fastify builds its schema compilers (ajv for validation, fast-json-stringify
 * for serialization) when an instance is created, whether or not any route has a
 * schema: ~25 ms of CPU and ~5 MB of RSS per process, measured. botfleet's
 * servers declare no schemas (webhook bodies are checked by hand, replies are
 * small), so the master's servers take these compilers instead, through fastify's
 * documented `schemaController.compilersFactory` option: a route given a schema
 * fails when the server starts, with this message, instead of loading ajv.
 */
import type { FastifyServerOptions } from 'fastify';

const refuse = () => () => {
  throw new Error('botfleet servers declare no fastify schemas (their compilers are not loaded): check the input by hand');
};

/** The `schemaController` option for a fastify server with no schemas. */
export const NO_SCHEMAS: FastifyServerOptions['schemaController'] = { compilersFactory: { buildValidator: refuse, buildSerializer: refuse } };
