"""Cost of signing cache values: plain pylibmc (pickle) against ops.cache.SignedClient,
side by side in one run against the same memcached.

    python -m ops.bench_cache --servers 127.0.0.1:11299 -n 20000

Each operation is one set plus one get of a typical value: a rendered message-list
fragment (text) and a list of 50 message dicts (pickled). Prints ops/s and microseconds
per operation for each client and the signed/plain ratio."""

from __future__ import annotations

import argparse
import secrets
import time
from typing import Any

import pylibmc
from django.conf import settings


def typical_values() -> dict[str, Any]:
    messages = [
        {
            "id": 10_000 + i,
            "room_id": 42,
            "sender": f"user{i % 7}",
            "body": f"Message number {i}: a line of chat of ordinary length.",
            "posted": f"2026-12-02T15:{i % 60:02d}:00+00:00",
        }
        for i in range(50)
    ]
    fragment = "".join(
        f'<li class="message" id="m{m["id"]}"><b>{m["sender"]}</b> {m["body"]}'
        f"<time>{m['posted']}</time></li>\n"
        for m in messages
    )
    return {"fragment (text)": fragment, "50 message dicts (pickle)": messages}


def run(client: pylibmc.Client, key: str, value: Any, count: int) -> float:
    """Seconds for `count` set+get pairs (after a short warm-up)."""
    for _ in range(200):
        client.set(key, value)
        client.get(key)
    start = time.perf_counter()
    for _ in range(count):
        client.set(key, value)
        if client.get(key) is None:
            raise RuntimeError("memcached lost the value")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="127.0.0.1:11211", help="host:port[,host:port]")
    parser.add_argument("-n", "--count", type=int, default=20_000, help="set+get pairs")
    args = parser.parse_args()
    if not settings.configured:
        settings.configure(SECRET_KEY=secrets.token_urlsafe(50))

    from ops.cache import SignedClient

    servers = args.servers.split(",")
    plain = pylibmc.Client(servers, binary=True, behaviors={"tcp_nodelay": True})
    signed = SignedClient(servers, binary=True, behaviors={"tcp_nodelay": True})
    print(f"{args.count} set+get pairs per row, memcached {args.servers}")
    print(f"{'value':28} {'client':7} {'ops/s':>9} {'us/op':>8} {'ratio':>6}")
    for name, value in typical_values().items():
        plain_s = run(plain, "bench:plain", value, args.count)
        signed_s = run(signed, "bench:signed", value, args.count)
        for label, seconds in (("plain", plain_s), ("signed", signed_s)):
            ratio = seconds / plain_s
            print(
                f"{name:28} {label:7} {args.count / seconds:9.0f} "
                f"{seconds / args.count * 1e6:8.1f} {ratio:6.2f}"
            )


if __name__ == "__main__":
    main()
