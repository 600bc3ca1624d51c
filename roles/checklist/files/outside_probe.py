#!/usr/bin/python3
"""What a host outside the site's groups can reach, for the pre-launch checklist.

Run by the checklist on its probe host (ansible.builtin.script) with one argument, base64
JSON: {site_name, admin, health_path, balancers: [addr], accelerators: [addr],
web: [addr], ports: {https, varnish, uwsgi}, scan: [addr], scan_output}, where scan_output
is what the port scan the checklist started earlier printed (nmap -oG -). Prints JSON: the
answers to the admin path in each spelling at each layer, to PURGE and BAN, to the health
path, and the open TCP ports of every scanned address. Sends each path exactly as written."""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import sys
from concurrent.futures import ThreadPoolExecutor


def spellings(admin: str) -> list[str]:
    """The admin's login page in spellings the app routes to the admin (uWSGI decodes
    percent-escapes, %2F included, and resolves dot segments before Django routes)."""
    name = admin.strip("/")
    encoded = "".join(f"%{ord(c):02X}" for c in name)
    return [
        f"/{name}/login/",
        f"/{name}%2Flogin/",
        f"/%{ord(name[0]):02x}{name[1:]}/login/",
        f"/{encoded}/login/",
        f"/{name}/%6Cogin/",
        f"/./{name}/login/",
        f"/rooms/../{name}/login/",
        f"/{name}//login/",
        f"/{name}/login/;x",
        f"/{name.upper()}/login/",
    ]


def ask(address: str, port: int, method: str, path: str, host: str, tls: bool) -> tuple[str, str]:
    """The status of one request (or why there was none) and the start of its body."""
    try:
        connection = http.client.HTTPConnection(address, port, timeout=5)
        raw = socket.create_connection((address, port), timeout=5)
        if tls:
            # The site's name as SNI while connecting to this balancer's own address.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            raw = context.wrap_socket(raw, server_hostname=host)
        connection.sock = raw
        headers = {"Host": host, "X-Forwarded-Proto": "https", "User-Agent": "hpd-checklist"}
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        body = response.read(4096).decode("utf-8", "replace")
        connection.close()
        return str(response.status), body
    except ConnectionRefusedError:
        return "refused", ""
    except (OSError, http.client.HTTPException) as error:
        return f"no answer ({type(error).__name__})", ""


def reachable(address: str, port: int) -> bool:
    """Whether a TCP connection opens (a firewall that drops would make every request wait)."""
    try:
        socket.create_connection((address, port), timeout=3).close()
        return True
    except OSError:
        return False


def probe_layer(layer: str, address: str, port: int, tls: bool, args: dict) -> dict:
    """Every question to one layer; 'no connection' for all of them when its port is shut."""
    site, questions = args["site_name"], []
    questions += [("admin", "GET", path) for path in spellings(args["admin"])]
    if layer != "uwsgi":
        questions += [("purge", method, "/") for method in ("PURGE", "BAN")]
        questions += [("health", "GET", args["health_path"])]
    is_open = reachable(address, port)
    out: dict = {"admin": [], "purge": [], "health": []}
    for kind, method, path in questions:
        status, body = (
            ask(address, port, method, path, site, tls) if is_open else ("no connection", "")
        )
        entry = {
            "layer": layer,
            "address": address,
            "method": method,
            "path": path,
            "status": status,
        }
        if kind == "health":
            entry.update(detailed='"checks"' in body, body=body[:300])
        out[kind].append(entry)
    return out


def open_ports(addresses: list[str], grepable: str) -> dict[str, list[int]]:
    """The open TCP ports of each address in nmap's grepable output (none when absent)."""
    found: dict[str, list[int]] = {address: [] for address in addresses}
    for line in grepable.splitlines():
        match = re.match(r"Host: (\S+) .*Ports: (.*)", line)
        if match:
            found[match[1]] = sorted(int(p) for p in re.findall(r"(\d+)/open/tcp", match[2]))
    return found


def main() -> int:
    args = json.loads(base64.b64decode(sys.argv[1]))
    ports = args["ports"]
    layers = (
        [("balancer", a, ports["https"], True) for a in args["balancers"]]
        + [("varnish", a, ports["varnish"], False) for a in args["accelerators"]]
        + [("uwsgi", a, ports["uwsgi"], False) for a in args["web"]]
    )
    report: dict = {"admin": [], "purge": [], "health": [], "ports": {}}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for result in pool.map(lambda layer: probe_layer(*layer, args), layers):
            for kind in ("admin", "purge", "health"):
                report[kind] += result[kind]
    report["ports"] = open_ports(args["scan"], args["scan_output"])
    report["probe_address"] = socket.gethostbyname(socket.gethostname())
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
