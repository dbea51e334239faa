// The server side of a WebSocket whose client stopped reading. graphql-ws sends a subscription's next event only once
// the previous one is written, so a stuck subscription holds one frame; but replies to queries the client goes on
// sending, and the frames of its other subscriptions, would pile up in this process without end. Past a bound, the
// connection is dropped (terminated: a close frame would only queue behind the rest) and its memory freed.
import { WebSocket } from 'ws';

export type OnStoppedReading = (socket: WebSocket, bufferedBytes: number) => void;

/** A `WebSocket` class for `new WebSocketServer({ WebSocket })`: drops a connection with more than `maxBufferedBytes` unsent. */
export function boundedWebSocket(maxBufferedBytes: number, onStoppedReading: OnStoppedReading): typeof WebSocket {
  class BoundedWebSocket extends WebSocket {
    override send(data: unknown, optionsOrCallback?: unknown, callback?: (error?: Error) => void): void {
      const cb = typeof optionsOrCallback === 'function' ? (optionsOrCallback as (error?: Error) => void) : callback;
      if (this.readyState === WebSocket.OPEN && this.bufferedAmount > maxBufferedBytes) {
        onStoppedReading(this, this.bufferedAmount);
        this.terminate();
        // The frame goes with the connection; the sender moves on (graphql-ws then sees the socket closed).
        if (cb) process.nextTick(cb);
        return;
      }
      (super.send as (data: unknown, options?: unknown, cb?: unknown) => void)(data, optionsOrCallback, callback);
    }
  }
  return BoundedWebSocket;
}
