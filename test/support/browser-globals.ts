// The official client reads SSE with @microsoft/fetch-event-source, which assumes a browser: it
// listens for `visibilitychange` on `document` and sets its timers on `window`. In Node, without
// them, every SSE request of the client fails at once (document is not defined) and, after three
// such failures, the client falls back to long-polling, so an SSE test would pass without ever
// streaming. The client's own tests run in jsdom; these are the few members a visible page has
// that the client and that library touch.

/** Installs a visible `document` and a `window` with timers, unless they already exist. */
export function installBrowserGlobals(): void {
  const scope = globalThis as Record<string, unknown>;
  if (scope.document === undefined) {
    const events = new EventTarget();
    scope.document = {
      hidden: false,
      visibilityState: 'visible',
      addEventListener: events.addEventListener.bind(events),
      removeEventListener: events.removeEventListener.bind(events),
    };
  }
  if (scope.window === undefined) {
    scope.window = {
      setTimeout: globalThis.setTimeout.bind(globalThis),
      clearTimeout: globalThis.clearTimeout.bind(globalThis),
    };
  }
}
