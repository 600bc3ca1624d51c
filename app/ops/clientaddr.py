"""The address of the client behind our own proxies.

A request reaches uWSGI through HAProxy (which *replaces* any X-Forwarded-For with the
client's address) and Varnish (which appends the balancer's address), so the app sees
``X-Forwarded-For: client, balancer`` and ``REMOTE_ADDR`` = the Varnish host. The client is
found by walking the chain ``[X-Forwarded-For entries..., REMOTE_ADDR]`` from the right and
skipping every hop in ``TRUSTED_PROXIES``: the first untrusted address is the client (if
every hop is trusted, the leftmost one, e.g. a balancer probing directly). Entries left of
an untrusted hop were written by that hop, so a forged header from a direct peer changes
nothing.

An entry that is not an IP address (garbage, a port, ``unknown``) stops the walk: it cannot
be trusted and cannot be named, so the client is ``UNKNOWN``, which no allowlist contains.
Our proxies never write such entries, so in production this only happens when something
in front of them is misconfigured.

Hand-written rather than django-ipware/python-ipware or django-xff: those match trusted
proxies by string prefix or by hop count, not by CIDR networks walked from the right.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from django.conf import settings
from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN = "unknown"


@lru_cache(maxsize=32)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    networks = []
    for entry in entries:
        try:
            # strict=False: "10.0.0.7/24" means the network that host is in.
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{entry!r} is not an IP address or network (CIDR)."
            ) from None
    return tuple(networks)


def networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Parse a setting's list of addresses and CIDRs (memoized per distinct list)."""
    return _networks(tuple(entries))


def parse_address(value: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    # An IPv4 client seen on a dual-stack socket is written ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(address: IPAddress | None, nets: Iterable[Network]) -> bool:
    return address is not None and any(address in net for net in nets)


def _find_client(request: HttpRequest) -> IPAddress | None:
    trusted = networks(settings.TRUSTED_PROXIES)
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    chain = [entry for entry in forwarded.split(",") if entry.strip()]
    chain.append(request.META.get("REMOTE_ADDR", ""))
    address = None
    for entry in reversed(chain):
        address = parse_address(entry)
        if address is None or not in_networks(address, trusted):
            return address
    return address  # every hop is trusted: the leftmost one


def client_ip(request: HttpRequest) -> IPAddress | None:
    """The client's address, or None when the chain holds an entry that is not one."""
    if not hasattr(request, "_client_ip"):
        request._client_ip = _find_client(request)  # type: ignore[attr-defined]
    return request._client_ip  # type: ignore[attr-defined]


def client_address(request: HttpRequest) -> str:
    """The client's address as text (``UNKNOWN`` when it cannot be told): for log lines
    and as the per-address key of rate limits."""
    address = client_ip(request)
    return UNKNOWN if address is None else str(address)


def client_in(request: HttpRequest, *settings_lists: Iterable[str]) -> bool:
    """Whether the client's address is in any of the given address/CIDR lists."""
    address = client_ip(request)
    return any(in_networks(address, networks(entries)) for entries in settings_lists)


def check_address_settings(app_configs: object = None, **kwargs: object) -> list[Error]:
    """System check: a typo in an address list fails `manage.py check` at deploy time
    instead of the first request."""
    errors = []
    for name in ("TRUSTED_PROXIES", "ADMIN_ALLOWLIST", "HEALTH_DETAIL_ALLOWLIST"):
        try:
            networks(getattr(settings, name))
        except ImproperlyConfigured as exc:
            errors.append(Error(f"{name}: {exc}", id="ops.E001"))
    return errors
