/**
 * A shape answer's body: JSON text; one Buffer shared by every request it answers (a live answer,
 * `sharedLiveAnswer`); or chunks sent in order without being joined (fallback rows are shared by
 * every request of their window, never copied per request).
 */
export type ShapeAnswerBody = string | Buffer | Iterable<Buffer>;

/**
 * A `GET /v1/shape` answer as a value: what to say, not how. Deciding code returns one, and one
 * function per transport sends it (HTTP: `sendShapeAnswer`), so every transport says the same.
 * A body is a JSON array of messages (docs/protocol.md §4), or a subset snapshot's object (§3.10).
 */
export interface ShapeAnswer {
  status: 200 | 409;
  /** By lower-case name (`HEADERS.*`); an `etag` makes the answer revalidatable (304). */
  headers: Record<string, string>;
  body: ShapeAnswerBody;
}
