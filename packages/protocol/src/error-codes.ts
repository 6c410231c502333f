/**
 * The table of Sluice error codes. `docs/errors.md` lists each one with how to fix it, and a
 * test fails when the two disagree.
 */
export const ERROR_CODES = {
  SLUICE_ERR_CONFIG_INVALID: {
    status: 500,
    summary: 'The server configuration (environment variables) is invalid.',
  },
  SLUICE_ERR_DB_UNREACHABLE: {
    status: 503,
    summary: 'The database could not be reached.',
  },
} as const satisfies Record<string, { status: number; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;
