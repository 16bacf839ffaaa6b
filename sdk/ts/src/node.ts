// Node-only extras: raw TCP via node:net (the gateway's native transport, server.port).
import { connect as netConnect } from "node:net";
import type { TransportFactory } from "./transport.js";

export * from "./index.js";

/** TCP transport to host:port; a going-away redirect "host:port" (§8.7) replaces both. */
export function tcpTransport(host: string, port: number): TransportFactory {
  return (handlers, redirect) =>
    new Promise((resolve, reject) => {
      let targetHost = host;
      let targetPort = port;
      if (redirect) {
        const colon = redirect.lastIndexOf(":");
        targetHost = redirect.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
        targetPort = Number(redirect.slice(colon + 1));
      }
      const socket = netConnect({ host: targetHost, port: targetPort, noDelay: true });
      let opened = false;
      let closed = false;
      socket.once("connect", () => {
        opened = true;
        resolve({
          messageFramed: false,
          send: (bytes) => {
            if (!socket.destroyed) socket.write(bytes);
          },
          close: () => socket.destroy(),
        });
      });
      socket.on("data", (chunk: Buffer) => handlers.onData(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)));
      socket.on("error", (error) => {
        if (!opened) reject(error);
      });
      socket.on("close", () => {
        if (closed) return;
        closed = true;
        if (opened) handlers.onClose();
      });
    });
}
