import type { Server } from 'node:net';

/** The configuration, or a file it names, cannot be used: one line per problem. */
export class ConfigError extends Error {
  readonly code = 'ERR_CONFIG';
  readonly problems: string[];

  constructor(problems: string[]) {
    super(problems.length === 1 ? problems[0] : `invalid configuration:\n${problems.join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** server.listen(), as a promise that rejects with a ListenError naming `what` (the config key). */
export function listenOn(server: Server, what: string, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const failed = (err: Error): void => reject(new ListenError(what, host, port, err));
    server.once('error', failed);
    server.listen({ host, port }, () => {
      server.off('error', failed);
      resolve();
    });
  });
}

/** A port could not be taken (in use, not permitted, a host that does not resolve): one line. */
export class ListenError extends Error {
  readonly code = 'ERR_LISTEN';

  /** `what`: the config key whose host and port these are (listen, admin). */
  constructor(what: string, host: string, port: number, cause: Error) {
    super(`cannot listen on ${what} ${host}:${port}: ${cause.message}`, { cause });
    this.name = 'ListenError';
  }
}
