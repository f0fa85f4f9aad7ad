"""TCP and UDP on loopback between real processes: listening, connecting, broadcast, multicast."""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable

import pytest

from tests.helpers import Child, assert_elapsed
from unixipc import (
    IPCOSError,
    MessageTooLarge,
    ResourceExistsError,
    ResourceNotFoundError,
    TimeoutExpired,
    UnsupportedFeature,
    WouldBlock,
    sockets,
)
from unixipc.sockets import Listener

# Groups of this test session (from its pid), so that concurrent runs do not meet.
_PID = os.getpid()
GROUP_V4 = f"239.255.{_PID >> 8 & 255}.{_PID & 255}"  # administratively scoped
GROUP_V6 = f"ff01::42:{_PID & 0xFFFF:x}"  # interface-local scope
IFF_MULTICAST = 0x1000


def _tcp_echo_client(host: str, port: int, count: int) -> int:
    with sockets.tcp_connect(host, port, timeout=30) as sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        for i in range(count):
            sockets.send_message(sock, str(i).encode(), timeout=30)
            assert sockets.receive_message(sock, max_size=64, timeout=30) == str(i * i).encode()
    return count


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_tcp_between_processes(host: str, children: Callable[..., Child]) -> None:
    with sockets.tcp_listen(host, 0) as listener:
        assert isinstance(listener, Listener)
        port = listener.address[1]
        assert port > 0
        child = children(_tcp_echo_client, host, port, 50)
        connection, peer = listener.accept(timeout=30)
    with connection:
        assert peer[0] == host
        for _ in range(50):
            number = int(sockets.receive_message(connection, max_size=64, timeout=30))
            sockets.send_message(connection, str(number * number).encode(), timeout=30)
    assert child.result() == 50


def test_tcp_address_in_use_and_refused() -> None:
    with sockets.tcp_listen("127.0.0.1", 0) as listener:
        port = listener.address[1]
        with pytest.raises(ResourceExistsError, match=f"TCP address '127.0.0.1:{port}'"):
            sockets.tcp_listen("127.0.0.1", port)
    with pytest.raises(IPCOSError) as caught:  # nobody listens there any more
        sockets.tcp_connect("127.0.0.1", port, timeout=30)
    assert caught.value.errno == errno.ECONNREFUSED
    with pytest.raises(ResourceNotFoundError, match="does not exist"):
        sockets.tcp_connect("no-such-host.invalid", 80, timeout=5)


def _connect_until_refused(port: int, queued: list[socket.socket]) -> None:
    for _ in range(5):
        queued.append(sockets.tcp_connect("127.0.0.1", port, timeout=0.5))


def test_tcp_connect_times_out_when_the_queue_is_full() -> None:
    with sockets.tcp_listen("127.0.0.1", 0, backlog=0) as listener:
        port = listener.address[1]
        queued = []
        try:
            with pytest.raises(TimeoutExpired):  # the kernel drops SYNs to a full queue
                _connect_until_refused(port, queued)
            started = time.monotonic()
            with pytest.raises(TimeoutExpired, match=r"connecting to 127\.0\.0\.1"):
                sockets.tcp_connect("127.0.0.1", port, timeout=0.3)
            assert_elapsed(started, 0.3)
        finally:
            for sock in queued:
                sock.close()


def test_tcp_argument_checks() -> None:
    with pytest.raises(TypeError, match="host"):
        sockets.tcp_listen(None, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="65535"):
        sockets.tcp_connect("127.0.0.1", 70000)
    with pytest.raises(ValueError, match="port"):
        sockets.tcp_listen("127.0.0.1", -1)


def _udp_echo(port: int, count: int) -> int:
    with sockets.udp_socket("127.0.0.1", 0) as sock:
        for i in range(count):
            sockets.send_datagram(sock, str(i).encode(), ("127.0.0.1", port), timeout=30)
            assert sockets.receive_datagram(sock, 64, timeout=30)[0] == f"ok {i}".encode()
    return count


def test_udp_between_processes(children: Callable[..., Child]) -> None:
    with sockets.udp_socket("127.0.0.1", 0) as server:
        child = children(_udp_echo, server.getsockname()[1], 20)
        for i in range(20):
            data, sender = sockets.receive_datagram(server, 64, timeout=30)
            assert data == str(i).encode()
            sockets.send_datagram(server, b"ok " + data, sender, timeout=30)
        assert child.result() == 20
        with pytest.raises(WouldBlock):
            sockets.receive_datagram(server, timeout=0)
        started = time.monotonic()
        with pytest.raises(TimeoutExpired):
            sockets.receive_datagram(server, timeout=0.3)
        assert_elapsed(started, 0.3)


def test_an_oversized_datagram_is_reported() -> None:
    with sockets.udp_socket("127.0.0.1", 0) as server, sockets.udp_socket("127.0.0.1", 0) as peer:
        sockets.send_datagram(peer, b"x" * 100, server.getsockname(), timeout=30)
        with pytest.raises(MessageTooLarge, match="longer than max_size=10"):
            sockets.receive_datagram(server, 10, timeout=30)
        with pytest.raises(MessageTooLarge, match="too large"):
            sockets.send_datagram(peer, b"x" * 70000, server.getsockname(), timeout=30)


def test_broadcast_on_loopback() -> None:
    with sockets.udp_socket("0.0.0.0", 0) as receiver:
        port = receiver.getsockname()[1]
        with sockets.udp_socket("127.0.0.1", 0) as plain:
            with pytest.raises(IPCOSError) as caught:  # SO_BROADCAST is required
                sockets.send_datagram(plain, b"b", ("127.255.255.255", port), timeout=30)
            assert caught.value.errno == errno.EACCES
        with sockets.udp_socket("127.0.0.1", 0, broadcast=True) as sender:
            sockets.send_datagram(sender, b"to everyone", ("127.255.255.255", port), timeout=30)
            assert sockets.receive_datagram(receiver, timeout=30)[0] == b"to everyone"


def _multicast_member(group: str, port_out: socket.socket, count: int) -> list[bytes]:
    with sockets.udp_socket(group, 0, reuse_address=True) as member:
        sockets.join_group(member, group, interface="127.0.0.1")
        sockets.send_all(port_out, str(member.getsockname()[1]).encode().ljust(8))
        received = [sockets.receive_datagram(member, timeout=30)[0] for _ in range(count)]
        sockets.leave_group(member, group, interface="127.0.0.1")
    return received


def test_ipv4_multicast_on_loopback_reaches_a_member_process(
    children: Callable[..., Child],
) -> None:
    tell, told = socket.socketpair()
    with tell, told:
        member = children(_multicast_member, GROUP_V4, tell, 3)
        port = int(sockets.receive_exactly(told, 8, timeout=30))
    with sockets.udp_socket(
        "127.0.0.1", 0, multicast_ttl=1, multicast_loop=True, multicast_interface="127.0.0.1"
    ) as sender:
        assert sender.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 1
        for i in range(3):
            sockets.send_datagram(sender, f"group message {i}".encode(), (GROUP_V4, port))
    assert member.result() == [f"group message {i}".encode() for i in range(3)]


def test_leaving_a_group_stops_delivery() -> None:
    with sockets.udp_socket(GROUP_V4, 0, reuse_address=True) as member:
        port = member.getsockname()[1]
        sockets.join_group(member, GROUP_V4, interface="127.0.0.1")
        with pytest.raises(ResourceExistsError):  # already a member
            sockets.join_group(member, GROUP_V4, interface="127.0.0.1")
        with sockets.udp_socket("127.0.0.1", 0, multicast_interface="127.0.0.1") as sender:
            sockets.send_datagram(sender, b"in", (GROUP_V4, port))
            assert sockets.receive_datagram(member, timeout=30)[0] == b"in"
            sockets.leave_group(member, GROUP_V4, interface="127.0.0.1")
            with sockets.udp_socket(GROUP_V4, port, reuse_address=True) as other:
                # another socket of the host still in the group does not make us receive
                sockets.join_group(other, GROUP_V4, interface="127.0.0.1")
                sockets.send_datagram(sender, b"out", (GROUP_V4, port))
                assert sockets.receive_datagram(other, timeout=30)[0] == b"out"
                with pytest.raises(TimeoutExpired):
                    sockets.receive_datagram(member, timeout=0.3)
        with pytest.raises(IPCOSError) as caught:
            sockets.leave_group(member, GROUP_V4, interface="127.0.0.1")
        assert caught.value.errno == errno.EADDRNOTAVAIL


def test_on_loopback_multicast_loop_off_still_delivers() -> None:
    """IP_MULTICAST_LOOP only suppresses the host's local copy; sending *on* lo is a loop.

    So on the loopback interface the datagram comes back through the device
    itself: documented in udp_socket, proven here.
    """
    with sockets.udp_socket(GROUP_V4, 0, reuse_address=True) as member:
        port = member.getsockname()[1]
        sockets.join_group(member, GROUP_V4, interface="127.0.0.1")
        with sockets.udp_socket(
            "127.0.0.1", 0, multicast_loop=False, multicast_interface="127.0.0.1"
        ) as sender:
            assert sender.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP) == 0
            sockets.send_datagram(sender, b"through lo", (GROUP_V4, port))
            assert sockets.receive_datagram(member, timeout=30)[0] == b"through lo"


def _loopback_has_multicast_flag() -> bool:
    with open("/sys/class/net/lo/flags") as flags:
        return bool(int(flags.read(), 16) & IFF_MULTICAST)


def test_ipv6_multicast_on_loopback_works_or_says_exactly_why_not() -> None:
    """Linux routes IPv6 multicast only through interfaces flagged MULTICAST; lo is not, by default.

    Without the flag the kernel has no ff00::/8 route on lo and sendto fails with
    ENETUNREACH: unixipc turns that into UnsupportedFeature naming the cause.
    """
    with sockets.udp_socket("::", 0, reuse_address=True) as member:
        port = member.getsockname()[1]
        sockets.join_group(member, GROUP_V6, interface="lo")
        with sockets.udp_socket(
            "::1", 0, multicast_loop=True, multicast_interface="lo", multicast_ttl=1
        ) as sender:
            if _loopback_has_multicast_flag():
                sockets.send_datagram(sender, b"v6", (GROUP_V6, port), timeout=30)
                assert sockets.receive_datagram(member, timeout=30)[0] == b"v6"
            else:
                with pytest.raises(
                    UnsupportedFeature,
                    match=r"ENETUNREACH.*MULTICAST flag",
                ):
                    sockets.send_datagram(sender, b"v6", (GROUP_V6, port), timeout=30)


def test_multicast_argument_checks() -> None:
    with sockets.udp_socket("127.0.0.1", 0) as sock:
        with pytest.raises(ValueError, match="multicast address"):
            sockets.join_group(sock, "127.0.0.1")
        with pytest.raises(ValueError, match="IPv6 socket"):
            sockets.join_group(sock, GROUP_V6)
        with pytest.raises(ValueError, match="IPv4 address"):
            sockets.join_group(sock, GROUP_V4, interface="lo")
        with pytest.raises(TypeError, match="group"):
            sockets.join_group(sock, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="255"):
        sockets.udp_socket("127.0.0.1", 0, multicast_ttl=256)
    with pytest.raises(TypeError, match="broadcast"):
        sockets.udp_socket("127.0.0.1", 0, broadcast=1)  # type: ignore[arg-type]
    with pytest.raises(ResourceNotFoundError, match="network interface 'nope0'"):
        sockets.udp_socket("::1", 0, multicast_interface="nope0")
