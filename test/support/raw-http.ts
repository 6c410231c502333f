import { connect } from 'node:net';

/** What came back for a raw request: the status line's code (0 when none came) and the text. */
export interface RawHttpAnswer {
  status: number;
  text: string;
}

/**
 * Sends `request` (bytes as written, nothing checked or encoded: the point is to send what
 * `fetch` refuses to) on a fresh connection and reads until the server closes it; rejects after
 * `timeoutMs`. The request should say `connection: close`.
 */
export function rawHttp(port: number, request: Buffer, timeoutMs: number): Promise<RawHttpAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      let text = Buffer.concat(chunks).toString('latin1');
      // Interim answers (100 Continue) come before the answer.
      while (/^HTTP\/1\.[01] 1\d\d /.test(text) && text.includes('\r\n\r\n')) {
        text = text.slice(text.indexOf('\r\n\r\n') + 4);
      }
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ status: status ? Number(status[1]) : 0, text });
    };
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    // A server that resets the connection has answered (or refused) all the same.
    socket.on('error', () => undefined);
    socket.on('close', finish);
    socket.write(request);
  });
}
