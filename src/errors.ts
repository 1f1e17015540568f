// Errors of the TypeScript layer carry the same stable codes as the native bindings.
export type SwitchErrorCode =
  | 'ERR_SWITCH_ARG_TYPE'
  | 'ERR_SWITCH_SHAPE'
  | 'ERR_SWITCH_RANGE'
  | 'ERR_SWITCH_DETACHED'
  | 'ERR_SWITCH_OPTION'
  | 'ERR_SWITCH_UNSUPPORTED'
  | 'ERR_SWITCH_NAN'
  | 'ERR_SWITCH_STATE'
  | 'ERR_MESH_PEER_LOST'
  | 'ERR_MESH_TIMEOUT'
  | 'ERR_MESH_LAUNCH'
  | 'ERR_MESH_MISMATCH'
  | 'ERR_MESH_MPI'
  | 'ERR_CHECKPOINT';

export interface CodedError extends Error {
  code: SwitchErrorCode;
}

function withCode<E extends Error>(error: E, code: SwitchErrorCode): E & CodedError {
  return Object.assign(error, { code });
}

export function typeError(code: SwitchErrorCode, message: string): TypeError & CodedError {
  return withCode(new TypeError(message), code);
}

export function rangeError(code: SwitchErrorCode, message: string): RangeError & CodedError {
  return withCode(new RangeError(message), code);
}

export function codedError(code: SwitchErrorCode, message: string): Error & CodedError {
  return withCode(new Error(message), code);
}
