/**
 * The package's import: what a program needs to run Portcullis in-process rather than through
 * the `portcullis` command. Everything else under dist/ is internal and may move.
 */
export { main } from './cli.js';
export { startPortcullis, type Portcullis, type PortcullisOptions } from './gateway.js';
export { ConfigError, loadConfigFile, parseConfig, type GatewayConfig, type LoadResult } from './config/load.js';
export { createLogger, type Logger } from './ops/log.js';
export { PROBLEMS, PROBLEM_TYPE_BASE, type ProblemBody, type ProblemCode } from './http/problem.js';
