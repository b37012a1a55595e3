// Drives the official ably-js 2 REST client, unmodified, against understudy's Ably REST ingress
// for tests/it/ably_ingress.rs, which checks what arrives on understudy's own transports.
// Settings come from the environment:
//   ABLY_PORT     understudy's port on 127.0.0.1 (plain HTTP: tls false)
//   ABLY_KEY      "keyName:keySecret"
//   ABLY_AUTH     "basic" (the key itself) or "token" (useTokenAuth: requestToken, then Bearer)
//   ABLY_BINARY   "1" msgpack (the SDK's default in Node), "0" JSON
//   ABLY_CHANNEL  the channel
//   ABLY_MODE     "publish": single, array, ids twice, binary; "refusals": ABLY_KEY (a wrong
//                 secret), then the tokens of ABLY_TOKENS (JSON: "expired" and "subscribe only")
// Prints one JSON line per step: {"step", "ok": true, "serials"} or {"step", "error": {code, statusCode}}.

import * as Ably from "ably";

const env = process.env;
const common = {
  restHost: "127.0.0.1", port: Number(env.ABLY_PORT), tls: false,
  useBinaryProtocol: env.ABLY_BINARY !== "0", logLevel: 0,
  // A custom restHost has no fallback hosts: an error is understudy's answer.
};

async function step(name, f) {
  try {
    const r = await f();
    console.log(JSON.stringify({ step: name, ok: true, serials: (r && r.serials) || null }));
  } catch (e) {
    console.log(JSON.stringify({ step: name, error: { code: e.code, statusCode: e.statusCode, message: e.message } }));
  }
}

if (env.ABLY_MODE === "refusals") {
  await step("key", () => new Ably.Rest({ ...common, key: env.ABLY_KEY }).channels.get(env.ABLY_CHANNEL).publish("r", "x"));
  const tokens = JSON.parse(env.ABLY_TOKENS);
  for (const name of ["expired", "subscribe only"]) {
    const rest = new Ably.Rest({ ...common, token: tokens[name] });
    await step(name, () => rest.channels.get(env.ABLY_CHANNEL).publish("r", "x"));
  }
} else {
  const rest = new Ably.Rest({ ...common, key: env.ABLY_KEY, useTokenAuth: env.ABLY_AUTH === "token" });
  const ch = rest.channels.get(env.ABLY_CHANNEL);
  await step("single", () => ch.publish("n1", "d1"));
  await step("array", () => ch.publish([{ name: "n2", data: { a: 1 } }, { name: "n3", data: "d3" }]));
  const fixed = [{ id: "fixed:0", name: "n4", data: "d4" }, { id: "fixed:1", name: "n5", data: "d5" }];
  await step("ids", () => ch.publish(fixed));
  await step("ids again", () => ch.publish(fixed));
  await step("binary", () => ch.publish("n6", Buffer.from([0, 1, 2])));
  if (env.ABLY_AUTH === "token") {
    const details = rest.auth.tokenDetails;
    console.log(JSON.stringify({ step: "token", ok: true, ttl: details.expires - details.issued, jwt: details.token.split(".").length === 3 }));
  }
}
