"""How a room joins an Arena round: this machine's network addresses, the participants' app that ``clo arena``
runs, the join link, and its QR code (docs/workshop.md, "Joining").

    >>> apps = running_apps(Arena().apps())            # where `clo arena` serves now, newest first
    >>> url = join_url(machine_addresses()[0], apps[0]["port"], "K7QM")
    >>> png = qr_png(url)                              # the image the host page shows the room

The addresses are listed with psutil's ``net_if_addrs`` (a dependency already, for the job manager): every IPv4
address of an interface that is up, loopback and link-local (169.254.x.x) ones left out. The one the machine's
default route leaves by — found by "connecting" a UDP socket, which sends nothing — comes first: on a laptop with
Wi-Fi and a Docker bridge that is the Wi-Fi address, the one the room reaches. The QR code is made by segno
(pure Python): nothing goes over the network.
"""
from __future__ import annotations

import io
import ipaddress
import socket

import psutil

__all__ = ["machine_addresses", "primary_address", "running_apps", "app_reachable", "join_url", "qr_png",
           "LOCAL_BINDS"]

LOCAL_BINDS = ("127.0.0.1", "localhost", "::1")  # a participants' app bound to these serves this machine only


def primary_address() -> str | None:
    """The IPv4 address this machine's default route leaves by, or ``None`` without one (offline). A UDP socket's
    ``connect`` only picks the route: no packet is sent."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1 (RFC 5737): never a real host
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(addr).is_loopback or addr == "0.0.0.0" else addr


def machine_addresses() -> list[str]:
    """This machine's IPv4 addresses the room could reach, the default route's first: every address of an
    interface that is up, without loopback and link-local ones. Empty on a machine with no network."""
    try:
        stats = psutil.net_if_stats()
        found = [a.address for name, addrs in psutil.net_if_addrs().items()
                 if stats.get(name) is None or stats[name].isup for a in addrs if a.family == socket.AF_INET]
    except (OSError, RuntimeError):
        found = []
    ips = []
    for a in found:
        try:
            ip = ipaddress.IPv4Address(a)
        except ValueError:
            continue
        if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified):
            ips.append(a)
    first = primary_address()
    ordered = ([first] if first in ips else []) + [a for a in ips if a != first]
    return list(dict.fromkeys(ordered))


def app_reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts connections on ``port`` where a participants' app bound to ``host`` listens (an
    app bound to every address, 0.0.0.0, answers on this machine's loopback too)."""
    target = "127.0.0.1" if host in ("0.0.0.0", "", "localhost") else ("::1" if host == "::" else host)
    try:
        with socket.create_connection((target, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def running_apps(apps: list[dict]) -> list[dict]:
    """Of the participants' apps ``clo arena`` registered (:meth:`clo.workshop.arena.Arena.apps`), those whose
    server process is alive and answers on its port, in the order given; each with ``local_only``: bound to
    loopback, so the room cannot reach it."""
    out = []
    for a in apps:
        try:
            alive = psutil.pid_exists(int(a["pid"]))
        except (OSError, ValueError, TypeError):
            alive = False
        if alive and app_reachable(a["host"], a["port"]):
            out.append({**a, "local_only": a["host"] in LOCAL_BINDS})
    return out


def join_url(address: str, port: int, code: str) -> str:
    """The link a participant opens: ``http://<address>:<port>/?round=<code>`` (an IPv6 address in brackets)."""
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{int(port)}/?round={code.strip().upper()}"


def qr_png(text: str, scale: int = 8) -> bytes:
    """A QR code of ``text`` as PNG bytes (segno; error correction M, so a projector's glare or a phone at an angle
    still reads it; the standard quiet zone of 4 modules)."""
    import segno

    buf = io.BytesIO()
    segno.make(text, error="m", micro=False).save(buf, kind="png", scale=scale, border=4)
    return buf.getvalue()
