// What a device process tells its launcher about an error, and the error the launcher rebuilds
// from it (shared by the shared-memory and the MPI launchers).

/** An error as it crosses from a device process to the launcher. */
export interface ReportedError {
  name: string;
  message: string;
  stack?: string;
  code?: string;
  rank?: number;
}

/** The reportable form of whatever a device's program threw. */
export function describeError(error: unknown): ReportedError {
  if (error instanceof Error) {
    const e = error as Error & { code?: unknown; rank?: unknown };
    return {
      name: e.name,
      message: e.message,
      stack: e.stack,
      code: typeof e.code === 'string' ? e.code : undefined,
      rank: typeof e.rank === 'number' ? e.rank : undefined,
    };
  }
  return { name: 'Error', message: `the program threw a non-Error value: ${String(error)}` };
}

/** The error a device process reported, rebuilt in the launcher with the rank in front. */
export function deviceError(rank: number, e: ReportedError): Error {
  const Ctor = e.name === 'TypeError' ? TypeError : e.name === 'RangeError' ? RangeError : Error;
  const error = new Ctor(`mesh device rank ${rank}: ${e.message}`) as Error & { code?: string; rank?: number; deviceStack?: string };
  if (e.code !== undefined) error.code = e.code;
  // The lost rank for ERR_MESH_PEER_LOST (it names the cause), otherwise the rank that threw.
  error.rank = e.rank ?? rank;
  error.deviceStack = e.stack;
  if (e.stack) error.stack = `${error.name}: ${error.message}\n    --- in device rank ${rank} ---\n${e.stack.split('\n').slice(1).join('\n')}`;
  return error;
}
