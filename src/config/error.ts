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
