"""Publishes through understudy's Pusher HTTP API with the official Pusher Python SDK, unmodified.

Run by tests/e2e/pusher_ingress.test.mjs with the server's address and the app's credentials in
its environment (UNDERSTUDY_HOST, UNDERSTUDY_PORT, PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET,
PUSHER_CHANNEL). Prints one JSON object: what each call answered, so the test can check both
what arrived and what was refused. Every call is bounded by the SDK's timeout.
"""

import json
import os
import sys
import time
from unittest import mock

import pusher
import pusher.errors


def client(secret):
    return pusher.Pusher(
        app_id=os.environ["PUSHER_APP_ID"],
        key=os.environ["PUSHER_KEY"],
        secret=secret,
        host=os.environ["UNDERSTUDY_HOST"],
        port=int(os.environ["UNDERSTUDY_PORT"]),
        ssl=False,
        timeout=5,
    )


def refusal(call):
    """The SDK's error for a refused call: its class name and the body it carries."""
    try:
        call()
    except pusher.errors.PusherError as e:
        return {"error": type(e).__name__, "body": str(e)}
    return {"error": None}


def main():
    channel = os.environ["PUSHER_CHANNEL"]
    good = client(os.environ["PUSHER_SECRET"])
    out = {}
    out["trigger"] = good.trigger(channel, "order.paid", {"total": 1})
    out["trigger_two"] = good.trigger([channel, channel + "-b"], "order.paid", "two")
    out["batch"] = good.trigger_batch(
        [
            {"channel": channel, "name": "order.shipped", "data": {"n": 3}},
            {"channel": channel, "name": "order.shipped", "data": "four"},
        ]
    )
    out["wrong_secret"] = refusal(
        lambda: client("not-the-app-secret-0123456789").trigger(channel, "e", "x")
    )
    # A publisher whose clock is 700 s behind signs an old auth_timestamp.
    behind = time.time() - 700
    with mock.patch("time.time", return_value=behind):
        out["old_timestamp"] = refusal(lambda: good.trigger(channel, "e", "x"))
    out["after"] = good.trigger(channel, "order.closed", "five")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
