"""Drives the official ably-python 3.1.4 REST client, unmodified, against understudy's Ably REST
ingress for tests/it/ably_ingress.rs, which checks what arrives on understudy's own transports.

Settings come from the environment (see tests/node/ably_rest.mjs, the same steps):
  ABLY_PORT, ABLY_TLS ("1": https, trusting SSL_CERT_FILE; the SDK refuses Basic auth over
  plain HTTP), ABLY_KEY, ABLY_AUTH ("basic" or "token"), ABLY_BINARY, ABLY_CHANNEL, ABLY_MODE,
  ABLY_TOKENS.
Prints one JSON line per step.
"""

import asyncio
import json
import os

from ably import AblyRest
from ably.types.message import Message
from ably.util.exceptions import AblyException

env = os.environ


def client(**auth):
    tls = env.get("ABLY_TLS") == "1"
    port = int(env["ABLY_PORT"])
    net = {"tls_port": port} if tls else {"port": port}
    return AblyRest(rest_host="127.0.0.1", tls=tls, use_binary_protocol=env.get("ABLY_BINARY") != "0",
                    fallback_hosts=[], **net, **auth)


async def step(name, f):
    try:
        r = await f()
        print(json.dumps({"step": name, "ok": True, "serials": getattr(r, "serials", None)}), flush=True)
    except AblyException as e:
        print(json.dumps({"step": name, "error": {"code": e.code, "statusCode": e.status_code,
                                                  "message": e.message}}), flush=True)


async def main():
    channel = env["ABLY_CHANNEL"]
    if env.get("ABLY_MODE") == "refusals":
        async with client(key=env["ABLY_KEY"]) as rest:
            await step("key", lambda: rest.channels.get(channel).publish("r", "x"))
        tokens = json.loads(env["ABLY_TOKENS"])
        for name in ["expired", "subscribe only"]:
            async with client(token=tokens[name]) as rest:
                await step(name, lambda: rest.channels.get(channel).publish("r", "x"))
        return
    async with client(key=env["ABLY_KEY"], use_token_auth=env.get("ABLY_AUTH") == "token") as rest:
        ch = rest.channels.get(channel)
        await step("single", lambda: ch.publish("n1", "d1"))
        await step("array", lambda: ch.publish(messages=[Message("n2", {"a": 1}), Message("n3", "d3")]))
        fixed = [Message("n4", "d4", id="fixed:0"), Message("n5", "d5", id="fixed:1")]
        await step("ids", lambda: ch.publish(messages=fixed))
        await step("ids again", lambda: ch.publish(messages=fixed))
        await step("binary", lambda: ch.publish("n6", b"\x00\x01\x02"))
        if env.get("ABLY_AUTH") == "token":
            details = rest.auth.token_details
            print(json.dumps({"step": "token", "ok": True, "ttl": details.expires - details.issued,
                              "jwt": len(details.token.split(".")) == 3}), flush=True)


asyncio.run(main())
