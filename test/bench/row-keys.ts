/**
 * Measure 3's clients find the rows in a response or frame by their keys instead of parsing the
 * JSON: the clients share the bench's two cores with the server, and their time is not the
 * server's. A row's key names the table and the primary key
 * (`"key":"\"public\".\"<table>\"/\"<id>\""`); these read `bench_live`'s integer ids out of it.
 */
export class RowKeys {
  /** The start of a row's key as it appears in the JSON, up to the primary key's digits. */
  readonly #head: Buffer;

  constructor(table: string) {
    this.#head = Buffer.from(JSON.stringify(`"public"."${table}"/"`).slice(0, -1));
  }

  /** Sets `received[id] = at` for the id of each row in `bytes`. */
  record(bytes: Buffer, received: Map<number, number>, at: number): void {
    const head = this.#head;
    for (let from = bytes.indexOf(head); from !== -1; from = bytes.indexOf(head, from)) {
      from += head.length;
      let id = 0;
      // The primary key's digits, up to its closing `\"`.
      for (let digit = bytes[from]! - 48; digit >= 0 && digit <= 9; digit = bytes[++from]! - 48) {
        id = id * 10 + digit;
      }
      received.set(id, at);
    }
  }
}
