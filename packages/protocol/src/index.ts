export * from './wire-names.js';
export * from './error-codes.js';
export * from './log-offset.js';
export * from './status-document.js';
export * from './messages.js';
export * from './ws-frames.js';
