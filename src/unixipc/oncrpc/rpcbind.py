"""A client of rpcbind, the portmapper (RFC 1833), and server registration.

rpcbind (program 100000, port 111) tells clients which port serves a program
version. It speaks PMAP version 2 (ports for TCP and UDP over IPv4) and
RPCBIND versions 3 and 4 (universal addresses for any transport)::

    from unixipc.oncrpc import rpcbind

    with rpcbind.RpcbindClient("localhost") as portmapper:
        for mapping in portmapper.pmap_dump():   # what `rpcinfo -p` lists
            print(mapping.program, mapping.version, mapping.protocol, mapping.port)

Servers register with :func:`register` (``oncrpc.Server`` does it for its
services) and unregister when they close. Changing registrations is allowed
only from this machine (rpcbind refuses SET and UNSET from other hosts).
"""

from __future__ import annotations

import dataclasses
import enum
import os
import socket
from typing import ClassVar

from .._deadline import check_timeout
from .._resource import Resource
from ..errors import IPCError, ResourceExistsError
from . import xdr
from ._client import DEFAULT_TIMEOUT, RPCBIND_PORT, Client
from ._errors import ProgramUnavailable, RpcError
from ._transport import (
    check_host,
    check_port,
    check_protocol,
    check_u32,
    parse_universal_address,
    resolve,
    universal_address,
)

__all__ = (
    "PMAP_VERSION",
    "RPCBIND_PORT",
    "RPCBIND_PROGRAM",
    "Binding",
    "Mapping",
    "Registration",
    "RpcbindClient",
    "parse_universal_address",
    "register",
    "universal_address",
)

RPCBIND_PROGRAM = 100000
PMAP_VERSION = 2
_IPPROTO = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
_PROTOCOL_NAMES = {number: name for name, number in _IPPROTO.items()}


class _Proc(enum.IntEnum):
    SET = 1
    UNSET = 2
    GETPORT = 3  # GETADDR in versions 3 and 4
    DUMP = 4


# The XDR of RFC 1833.


@dataclasses.dataclass(slots=True)
class _Mapping(xdr.Struct):
    prog: int
    vers: int
    prot: int
    port: int


xdr.define_struct(
    _Mapping,
    [
        ("prog", xdr.UNSIGNED),
        ("vers", xdr.UNSIGNED),
        ("prot", xdr.UNSIGNED),
        ("port", xdr.UNSIGNED),
    ],
)


@dataclasses.dataclass(slots=True)
class _PmapList(xdr.Struct):
    map: _Mapping
    next: _PmapList | None


xdr.define_struct(_PmapList, [("map", _Mapping), ("next", xdr.Optional(_PmapList))])


@dataclasses.dataclass(slots=True)
class _Rpcb(xdr.Struct):
    r_prog: int
    r_vers: int
    r_netid: str
    r_addr: str
    r_owner: str


xdr.define_struct(
    _Rpcb,
    [
        ("r_prog", xdr.UNSIGNED),
        ("r_vers", xdr.UNSIGNED),
        ("r_netid", xdr.String()),
        ("r_addr", xdr.String()),
        ("r_owner", xdr.String()),
    ],
)


@dataclasses.dataclass(slots=True)
class _RpcbList(xdr.Struct):
    rpcb_map: _Rpcb
    rpcb_next: _RpcbList | None


xdr.define_struct(_RpcbList, [("rpcb_map", _Rpcb), ("rpcb_next", xdr.Optional(_RpcbList))])

_PMAP_LIST = xdr.Optional(_PmapList)
_RPCB_LIST = xdr.Optional(_RpcbList)


@dataclasses.dataclass(frozen=True)
class Mapping:
    """A PMAP version 2 registration: program, version, ``"tcp"``/``"udp"`` (or the
    IP protocol number when it is another) and port."""

    program: int
    version: int
    protocol: str | int
    port: int


@dataclasses.dataclass(frozen=True)
class Binding:
    """An RPCBIND version 3/4 registration: program, version, netid (``tcp``,
    ``udp6``, ``local``...), universal address and owner (a uid, or ``superuser``)."""

    program: int
    version: int
    netid: str
    address: str
    owner: str


class RpcbindClient(Resource):
    """Talks to rpcbind on ``host`` (port 111 unless ``port`` says otherwise).

    Methods named ``pmap_*`` and :meth:`getport` use PMAP version 2; the others
    RPCBIND version 4 (``version=3`` for an rpcbind that lacks 4). ``host`` may
    be the path of rpcbind's UNIX socket (``/run/rpcbind.sock``: versions 3 and
    4 only). Every call waits at most ``timeout`` seconds.
    """

    kind: ClassVar[str] = "rpcbind client"

    def __init__(
        self,
        host: str = "localhost",
        *,
        protocol: str = "tcp",
        port: int = RPCBIND_PORT,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int = 4,
    ) -> None:
        self.host = check_host(host)
        self.protocol = check_protocol(protocol)
        self.port = check_port(port)
        self.timeout = check_timeout(timeout)
        if version not in (3, 4):
            raise ValueError(f"version must be 3 or 4, got {version!r}")
        self.version = version
        self._clients: dict[int, Client] = {}
        self._opened(f"{host}:{port}")

    def _client(self, version: int) -> Client:
        self._check_open()
        client = self._clients.get(version)
        if client is None:
            client = self._clients[version] = Client(
                self.host,
                RPCBIND_PROGRAM,
                version,
                protocol=self.protocol,
                port=self.port,
                timeout=self.timeout,
            )
        return client

    def _release(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def null(self) -> None:
        """Ping rpcbind (NULL of RPCBIND ``version``)."""
        self._client(self.version).null()

    # PMAP version 2

    def getport(self, program: int, version: int, protocol: str = "tcp") -> int:
        """The port of ``program`` ``version`` over ``protocol``, or 0 if not registered."""
        query = _Mapping(
            check_u32(program, "program"),
            check_u32(version, "version"),
            _IPPROTO[check_protocol(protocol)],
            0,
        )
        port: int = self._client(PMAP_VERSION)._call_typed(
            _Proc.GETPORT, (_Mapping.xdr_type,), (query,), xdr.UNSIGNED
        )
        return port

    def pmap_set(self, program: int, version: int, protocol: str, port: int) -> bool:
        """Register a port (PMAP SET); False if rpcbind refused (e.g. already registered)."""
        mapping = _Mapping(
            check_u32(program, "program"),
            check_u32(version, "version"),
            _IPPROTO[check_protocol(protocol)],
            check_port(port),
        )
        done: bool = self._client(PMAP_VERSION)._call_typed(
            _Proc.SET, (_Mapping.xdr_type,), (mapping,), xdr.BOOL
        )
        return done

    def pmap_unset(self, program: int, version: int) -> bool:
        """Remove every PMAP registration of ``program`` ``version`` (PMAP UNSET)."""
        mapping = _Mapping(check_u32(program, "program"), check_u32(version, "version"), 0, 0)
        done: bool = self._client(PMAP_VERSION)._call_typed(
            _Proc.UNSET, (_Mapping.xdr_type,), (mapping,), xdr.BOOL
        )
        return done

    def pmap_dump(self) -> list[Mapping]:
        """Every registration rpcbind lists for PMAP (what ``rpcinfo -p`` prints)."""
        node = self._client(PMAP_VERSION)._call_typed(_Proc.DUMP, (), (), _PMAP_LIST)
        found = []
        while node is not None:
            item = node.map
            found.append(
                Mapping(item.prog, item.vers, _PROTOCOL_NAMES.get(item.prot, item.prot), item.port)
            )
            node = node.next
        return found

    # RPCBIND versions 3 and 4

    def getaddr(self, program: int, version: int, netid: str = "tcp") -> str:
        """The universal address of ``program`` ``version``; "" if none.

        rpcbind answers for the transport the question came on (RFC 1833: a
        client on UDP over IPv6 learns the ``udp6`` address), whatever ``netid``
        says; ``protocol`` and the host's address family choose that transport.
        """
        query = _Rpcb(
            check_u32(program, "program"),
            check_u32(version, "version"),
            _text(netid, "netid"),
            "",
            "",
        )
        address: str = self._client(self.version)._call_typed(
            _Proc.GETPORT, (_Rpcb.xdr_type,), (query,), xdr.String()
        )
        return address

    def set(self, program: int, version: int, netid: str, address: str, owner: str = "") -> bool:
        """Register ``address`` (RPCBIND SET); False if rpcbind refused (e.g. already set).

        rpcbind records the owner itself from the caller's credentials.
        """
        entry = _Rpcb(
            check_u32(program, "program"),
            check_u32(version, "version"),
            _text(netid, "netid"),
            _text(address, "address"),
            _text(owner, "owner"),
        )
        done: bool = self._client(self.version)._call_typed(
            _Proc.SET, (_Rpcb.xdr_type,), (entry,), xdr.BOOL
        )
        return done

    def unset(self, program: int, version: int, netid: str = "") -> bool:
        """Remove the registration on ``netid`` (all of them for ``""``) (RPCBIND UNSET)."""
        entry = _Rpcb(
            check_u32(program, "program"),
            check_u32(version, "version"),
            _text(netid, "netid"),
            "",
            "",
        )
        done: bool = self._client(self.version)._call_typed(
            _Proc.UNSET, (_Rpcb.xdr_type,), (entry,), xdr.BOOL
        )
        return done

    def dump(self) -> list[Binding]:
        """Every registration, with its netid, universal address and owner."""
        node = self._client(self.version)._call_typed(_Proc.DUMP, (), (), _RPCB_LIST)
        found = []
        while node is not None:
            item = node.rpcb_map
            found.append(Binding(item.r_prog, item.r_vers, item.r_netid, item.r_addr, item.r_owner))
            node = node.rpcb_next
        return found


def _text(value: object, argument: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be a str, not {type(value).__name__}")
    return value


class Registration:
    """One (program, version, netid) that :func:`register` set; :meth:`unregister` undoes it."""

    def __init__(
        self, program: int, version: int, netid: str, address: str, rpcbind_host: str
    ) -> None:
        self.program = program
        self.version = version
        self.netid = netid
        self.address = address
        self.rpcbind_host = rpcbind_host
        self.active = True

    def unregister(self) -> None:
        """Remove the registration if it is still ours (idempotent)."""
        if not self.active:
            return
        self.active = False
        with RpcbindClient(_local(self.rpcbind_host), timeout=5.0) as portmapper:
            if _registered(portmapper, self.program, self.version, self.netid) == self.address:
                portmapper.unset(self.program, self.version, self.netid)

    def __repr__(self) -> str:
        state = "registered" if self.active else "unregistered"
        return f"<Registration {self.program} v{self.version} {self.netid} {self.address} {state}>"


#: Where rpcbind listens for local callers, whose uid it then knows (it records
#: registrations made there as owned by that uid, and lets only it remove them).
LOCAL_SOCKETS = ("/run/rpcbind.sock", "/var/run/rpcbind.sock")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def _local(rpcbind_host: str) -> str:
    """rpcbind's UNIX socket when ``rpcbind_host`` is this machine and it has one."""
    if rpcbind_host in _LOOPBACK:
        for path in LOCAL_SOCKETS:
            if os.path.exists(path):
                return path
    return rpcbind_host


def register(
    program: int,
    version: int,
    protocol: str,
    port: int,
    *,
    host: str = "0.0.0.0",
    rpcbind_host: str = "localhost",
    timeout: float | None = 5.0,
) -> Registration:
    """Register a server's port with rpcbind (RPCBIND SET on netid ``tcp``/``udp``, or
    ``tcp6``/``udp6`` for an IPv6 ``host``).

    A registration that another server left is replaced if that server no longer
    answers a NULL call on it; a live server's is not.

    Raises:
        ResourceExistsError: a live server has this registration.
        IPCError: rpcbind refused the registration or is not running.
    """
    check_protocol(protocol)
    family, address = resolve(host, port, protocol)
    netid = protocol + ("6" if family == socket.AF_INET6 else "")
    universal = universal_address(address[0], port)
    portmapper = RpcbindClient(_local(rpcbind_host), timeout=timeout)
    try:
        portmapper.null()
    except (IPCError, OSError) as error:
        portmapper.close()
        raise IPCError(
            f"cannot reach rpcbind on {rpcbind_host} to register program {program} "
            f"version {version} ({error}): start rpcbind, or do without it (register=False)"
        ) from error
    with portmapper:
        # rpcbind answers SET with "yes" when the entry exists, whoever made it:
        # look first, and check afterwards that the entry is ours.
        existing = _registered(portmapper, program, version, netid)
        if existing is not None:
            if _answers(existing, rpcbind_host, program, version, protocol):
                raise ResourceExistsError(
                    0,
                    f"program {program} version {version} ({netid}) is already registered "
                    f"by a live server at {existing}",
                    f"{program}/{version}/{netid}",
                )
            portmapper.unset(program, version, netid)
        portmapper.set(program, version, netid, universal)
        if _registered(portmapper, program, version, netid) != universal:
            raise IPCError(
                f"rpcbind on {rpcbind_host} did not register program {program} "
                f"version {version} ({netid}) at {universal}"
            )
    return Registration(program, version, netid, universal, rpcbind_host)


def _registered(portmapper: RpcbindClient, program: int, version: int, netid: str) -> str | None:
    """The universal address registered for (program, version, netid), if any."""
    for binding in portmapper.dump():
        if (binding.program, binding.version, binding.netid) == (program, version, netid):
            return binding.address
    return None


def _answers(address: str, rpcbind_host: str, program: int, version: int, protocol: str) -> bool:
    """Does a server answer a NULL call at this universal address?"""
    host, port = parse_universal_address(address)
    if host in ("0.0.0.0", "::"):
        host = rpcbind_host
    try:
        with Client(host, program, version, protocol=protocol, port=port, timeout=2.0) as client:
            client.null()
    except ProgramUnavailable:
        return False  # the port now belongs to another program
    except RpcError:
        return True  # it answered, if only to refuse
    except (IPCError, OSError):
        return False
    return True
