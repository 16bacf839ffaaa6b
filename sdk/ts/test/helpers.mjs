// Shared by the live tests: transports by name, waiting for events with a deadline (never a blind sleep).
import WebSocket from "ws";
import { EmberClient, tcpTransport, webSocketTransport } from "../dist/node.js";

export function transportFor(kind, gateway, wrap) {
  const factory =
    kind === "ws"
      ? webSocketTransport(`ws://127.0.0.1:${gateway.wsPort}/ws`, { WebSocket })
      : tcpTransport("127.0.0.1", gateway.port);
  return wrap ? wrap(factory) : factory;
}

export function newClient(token, kind, gateway, options = {}) {
  const { wrap, ...rest } = options;
  return new EmberClient({ token, transport: transportFor(kind, gateway, wrap), requestTimeoutMs: 10_000, backoffMs: { initial: 200, max: 2_000 }, ...rest });
}

/** Resolves with the first event value that passes `accept`, or rejects after `ms` naming what it waited for. */
export function waitFor(client, event, accept = () => true, ms = 30_000, what = event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${what}`));
    }, ms);
    const off = client.on(event, (value) => {
      if (!accept(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

/** Collects every `message` event of a client. */
export function inbox(client) {
  const messages = [];
  client.on("message", (m) => messages.push(m));
  return messages;
}

export const textOf = (m) => m.content.searchable_content;

/**
 * Wraps a transport factory so a test can cut the connection right after the next REQUEST frame is written
 * (the header is clear: byte 3 is the type), i.e. after the server has it but before its answer arrives.
 */
export function cuttable(factory) {
  const control = { armed: false, cuts: 0 };
  const wrapped = async (handlers, redirect) => {
    const transport = await factory(handlers, redirect);
    return {
      messageFramed: transport.messageFramed,
      send(bytes) {
        transport.send(bytes);
        if (control.armed && bytes[3] === 4) {
          control.armed = false;
          control.cuts++;
          // Let the bytes reach the server, then drop the socket before the RESPONSE can come back.
          setImmediate(() => transport.close());
        }
      },
      close: () => transport.close(),
    };
  };
  return { factory: wrapped, control };
}

/** A client's status now or later: resolves at once when it already is `status`. */
export function untilStatus(client, status, ms = 40_000, what = `status ${status}`) {
  if (client.status === status) return Promise.resolve(status);
  return waitFor(client, "status", (s) => s === status, ms, what);
}

/**
 * Every message a client has delivered since `watch(client)`, and `until(pred)`: the first such message,
 * already seen or still to come (so a push that beat the listener is not missed).
 */
export function watch(client) {
  const messages = [];
  const waiters = [];
  client.on("message", (m) => {
    messages.push(m);
    for (const waiter of [...waiters]) if (waiter.pred(m)) waiter.done(m);
  });
  return {
    messages,
    until(pred, ms = 30_000, what = "a message") {
      const found = messages.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const waiter = {
          pred,
          done: (m) => {
            clearTimeout(timer);
            waiters.splice(waiters.indexOf(waiter), 1);
            resolve(m);
          },
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`timed out waiting for ${what}`));
        }, ms);
        waiters.push(waiter);
      });
    },
  };
}
