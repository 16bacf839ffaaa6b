// Transports carry bytes; the protocol above them is the same (PROTOCOL.md: one protocol, two transports).
// A TCP stream delivers chunks cut anywhere; a WebSocket delivers one frame per binary message.

export interface TransportHandlers {
  onData(chunk: Uint8Array): void;
  /** Called once, when the transport is gone (closed by either side or failed). */
  onClose(error?: Error): void;
}

export interface Transport {
  /** True when every onData chunk is exactly one frame (WebSocket), false for a byte stream (TCP). */
  readonly messageFramed: boolean;
  send(bytes: Uint8Array): void;
  close(): void;
}

/**
 * Opens one transport connection. `redirect` is a server's going-away "host:port" (§8.7), or undefined for the
 * configured address. Resolves once the connection is up (the server then speaks first: HELLO).
 */
export type TransportFactory = (handlers: TransportHandlers, redirect?: string) => Promise<Transport>;

/**
 * The nodes of one cluster (docs/ARCHITECTURE.md, "Cluster"), each a transport: every node holds the same
 * sessions and inboxes, so the same token works on each. A connect tries the transport that connected last,
 * then each other one once, in order, and fails only when none can be reached (the client's backoff then
 * applies as for one gateway); a connected client stays on its node until the connection is lost. A going-away
 * redirect (§8.7) is handed to the first one tried. The Python SDK's `endpoints` option does the same.
 */
export function failoverTransport(factories: readonly TransportFactory[]): TransportFactory {
  if (factories.length === 0) throw new Error("failoverTransport needs at least one transport");
  let current = 0;
  return async (handlers, redirect) => {
    let lastError: unknown;
    for (let tried = 0; tried < factories.length; tried++) {
      const index = (current + tried) % factories.length;
      try {
        const transport = await factories[index](handlers, tried === 0 ? redirect : undefined);
        current = index;
        return transport;
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  };
}

/** The part of the WHATWG WebSocket that this SDK uses (browsers' WebSocket, Node 22's, or the `ws` package's). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code?: number; reason?: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface WebSocketTransportOptions {
  /** Defaults to globalThis.WebSocket (every browser; Node 22+, or Node 20 with --experimental-websocket). */
  WebSocket?: WebSocketConstructor;
}

/**
 * WebSocket transport (PROTOCOL.md §2.2): `url` is the gateway's listener, e.g. "ws://127.0.0.1:7602/ws" (or
 * wss:// behind a TLS proxy). Binary messages only, no subprotocol; each one is one protocol frame, header
 * included. A going-away redirect names a TCP host:port, so a WebSocket client ignores it and reconnects to
 * its own URL (§2.2 item 8: behind a proxy, the proxy picks the node).
 */
export function webSocketTransport(url: string, options: WebSocketTransportOptions = {}): TransportFactory {
  return (handlers) =>
    new Promise<Transport>((resolve, reject) => {
      const Ctor = options.WebSocket ?? (globalThis as unknown as { WebSocket?: WebSocketConstructor }).WebSocket;
      if (Ctor === undefined) {
        reject(new Error("no WebSocket: pass options.WebSocket (e.g. the ws package) on Node 20"));
        return;
      }
      const socket = new Ctor(url);
      socket.binaryType = "arraybuffer";
      let opened = false;
      let closed = false;
      const finish = (error?: Error) => {
        if (closed) return;
        closed = true;
        if (!opened) reject(error ?? new Error("WebSocket closed before it opened"));
        else handlers.onClose(error);
      };
      socket.onopen = () => {
        opened = true;
        resolve({
          messageFramed: true,
          send: (bytes) => {
            if (socket.readyState === 1) socket.send(bytes);
          },
          close: () => {
            try {
              socket.close(1000);
            } catch {
              /* already closing */
            }
          },
        });
      };
      socket.onmessage = (event) => {
        const data = event.data;
        if (data instanceof ArrayBuffer) handlers.onData(new Uint8Array(data));
        else if (ArrayBuffer.isView(data)) handlers.onData(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        else {
          // A text message is not part of the protocol: treat it as a violation by the server.
          socket.close(1003);
          finish(new Error("text WebSocket message"));
        }
      };
      socket.onerror = () => finish(new Error("WebSocket error"));
      socket.onclose = (event) =>
        finish(event.code === 1000 || event.code === undefined ? undefined : new Error(`WebSocket closed (${event.code}${event.reason ? ` ${event.reason}` : ""})`));
    });
}
