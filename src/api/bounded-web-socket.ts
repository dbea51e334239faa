// The server side of a WebSocket whose client stopped reading. graphql-ws sends a subscription's next event only once
// the previous one is written, so a stuck subscription holds one frame; but replies to queries the client goes on
// sending, and the frames of its other subscriptions, would pile up in this process without end. Past a bound, the
// connection is dropped (terminated: a close frame would only queue behind the rest) and its memory freed.
//
// Shared subscriptions write their frames through sendTextFrames: every frame of a socket in one write, framed here
// (RFC 6455 §5.2: a server's frames are unmasked), instead of one ws send, with its own cork and header buffer, per
// frame. With thousands of subscribers, that per-frame work was most of the CPU an event cost.
//
// What a client sends is bounded too: given MessageTurns, its messages and its close wait their turn there, and a
// client with many messages waiting is no longer read from until they are handled (message-turns.ts).
import type { Socket } from 'node:net';
import { WebSocket } from 'ws';
import type { MessageTurns, TurnTaker } from './message-turns';

/** A text frame's payload, as the parts it is made of (sent one after another, never concatenated first). */
export type TextFrame = readonly Buffer[];

export type OnStoppedReading = (socket: WebSocket, bufferedBytes: number) => void;

/** A socket that can take several text frames in one write (the class boundedWebSocket makes). */
export interface TextFrameSocket extends WebSocket {
  /** Text frames in order, in one write; each frame's payload is the concatenation of its parts (UTF-8). */
  sendTextFrames(frames: readonly TextFrame[]): void;
}

export function canSendTextFrames(socket: WebSocket): socket is TextFrameSocket {
  return typeof (socket as Partial<TextFrameSocket>).sendTextFrames === 'function';
}

/**
 * A `WebSocket` class for `new WebSocketServer({ WebSocket })`: drops a connection with more than `maxBufferedBytes`
 * unsent; with `turns`, its messages and its close are handled in their turn.
 */
export function boundedWebSocket(maxBufferedBytes: number, onStoppedReading: OnStoppedReading, turns?: MessageTurns): typeof WebSocket {
  class BoundedWebSocket extends WebSocket implements TextFrameSocket, TurnTaker {
    override emit(event: string | symbol, ...args: unknown[]): boolean {
      if (turns && (event === 'message' || event === 'close')) {
        turns.defer(this, event, args);
        return true;
      }
      return super.emit(event, ...args);
    }

    emitNow(event: string, args: unknown[]): void {
      super.emit(event, ...(event === 'message' ? asText(args) : args));
    }

    override send(data: unknown, optionsOrCallback?: unknown, callback?: (error?: Error) => void): void {
      const cb = typeof optionsOrCallback === 'function' ? (optionsOrCallback as (error?: Error) => void) : callback;
      if (this.dropIfStuck()) {
        // The frame goes with the connection; the sender moves on (graphql-ws then sees the socket closed).
        if (cb) process.nextTick(cb);
        return;
      }
      (super.send as (data: unknown, options?: unknown, cb?: unknown) => void)(data, optionsOrCallback, callback);
    }

    sendTextFrames(frames: readonly TextFrame[]): void {
      if (frames.length === 0 || this.readyState !== WebSocket.OPEN || this.dropIfStuck()) return;
      const raw = (this as unknown as { _socket?: Socket })._socket;
      if (!raw || !senderIdle(this)) {
        // ws holds frames of its own (it never does without compression, which this server does not offer): behind them.
        for (const parts of frames) super.send(Buffer.concat(parts), { binary: false });
        return;
      }
      raw.write(encodeTextFrames(frames));
    }

    private dropIfStuck(): boolean {
      if (this.readyState !== WebSocket.OPEN || this.bufferedAmount <= maxBufferedBytes) return false;
      onStoppedReading(this, this.bufferedAmount);
      this.terminate();
      return true;
    }
  }
  return BoundedWebSocket;
}

/**
 * A message as the text graphql-ws reads it as (String(data): UTF-8). graphql-ws keeps the `data` it was given for as
 * long as the operation that message started runs (its handler awaits the whole subscription), and a Buffer is three
 * objects and memory outside the heap (~450 B for a subscribe, 2,000 subscribers' heap snapshots) on top of the
 * string it makes of it: given the string, it keeps that alone.
 */
function asText([data, ...rest]: unknown[]): unknown[] {
  return [Buffer.isBuffer(data) ? data.toString('utf8') : data, ...rest];
}

/** Whether ws's sender has nothing queued (its own frames would otherwise go after ours). */
function senderIdle(socket: WebSocket): boolean {
  const sender = (socket as unknown as { _sender?: { _state?: number; _queue?: unknown[] } })._sender;
  return sender?._state === 0 && sender._queue?.length === 0;
}

/** Unmasked, unfragmented text frames (FIN, opcode 1), one after another in one buffer. */
export function encodeTextFrames(frames: readonly TextFrame[]): Buffer {
  let size = 0;
  for (const parts of frames) {
    const length = lengthOf(parts);
    size += headerLength(length) + length;
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const parts of frames) {
    const length = lengthOf(parts);
    out[at++] = 0x81;
    if (length < 126) {
      out[at++] = length;
    } else if (length < 0x10000) {
      out[at++] = 126;
      out.writeUInt16BE(length, at);
      at += 2;
    } else {
      out[at++] = 127;
      out.writeBigUInt64BE(BigInt(length), at);
      at += 8;
    }
    for (const part of parts) at += part.copy(out, at);
  }
  return out;
}

function lengthOf(parts: TextFrame): number {
  let length = 0;
  for (const part of parts) length += part.length;
  return length;
}

const headerLength = (length: number) => (length < 126 ? 2 : length < 0x10000 ? 4 : 10);
