// @ember-im/sdk: a client for the Ember IM gateway, written from docs/PROTOCOL.md. Works in browsers and Node 20+.
// TCP (Node only) is in "@ember-im/sdk/node", so that a browser bundle never pulls in node:net.
export * from "./bytes.js";
export * from "./client.js";
export * from "./connection.js";
export * from "./conversations.js";
export * from "./crypto.js";
export * from "./fields.js";
export * from "./frames.js";
export * from "./msgpack.js";
export * from "./token.js";
export * from "./transport.js";
export * from "./types.js";
