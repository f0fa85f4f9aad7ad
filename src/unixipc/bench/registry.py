"""Every transport the benchmark knows, in the order the report lists them.

This is the one place a new transport is added: write its adapter (see
:mod:`unixipc.bench.transport`) and append an instance here.
"""

from __future__ import annotations

from .adapters import c, channels, facilities, nats, oncrpc, peers, rpc, topics
from .transport import Transport

TRANSPORTS: tuple[Transport, ...] = (
    # unixipc, each facility through its own API
    facilities.RingTransport(),
    facilities.RingBatchTransport(),
    topics.TopicTransport(),
    topics.TopicBatchTransport(),
    facilities.PipeTransport(),
    facilities.FifoTransport(),
    facilities.UnixSocketTransport(),
    facilities.TcpSocketTransport(),
    facilities.PosixMqTransport(),
    facilities.SysVMqTransport(),
    facilities.ShmSemaphoreTransport(),
    # unixipc channels, one per URL scheme
    channels.ChannelShmTransport(),
    channels.ChannelShmUrlTransport(),
    channels.ChannelPipeTransport(),
    channels.ChannelSocketpairTransport(),
    channels.ChannelUnixTransport(),
    channels.ChannelTcpTransport(),
    channels.ChannelFifoTransport(),
    channels.ChannelMqTransport(),
    channels.ChannelSysvMqTransport(),
    nats.ChannelNatsTransport(),
    channels.AioShmTransport(),
    channels.AioMqTransport(),
    channels.AioUnixTransport(),
    # what users pick instead
    peers.PySpinTransport(),
    peers.MpPipeTransport(),
    peers.MpQueueTransport(),
    peers.MpSimpleQueueTransport(),
    peers.FasterFifoTransport(),
    peers.FasterFifoBatchTransport(),
    peers.ZmqIpcTransport(),
    peers.ZmqTcpTransport(),
    peers.PosixIpcTransport(),
    peers.SysvIpcTransport(),
    peers.IceoryxTransport(),
    topics.ZmqPubSubTransport(),
    nats.NatsPyRequestTransport(),
    nats.NatsPyPublishTransport(),
    # remote procedure calls: unixipc.rpc, then what users pick instead
    rpc.RpcShmTransport(),
    rpc.RpcUnixTransport(),
    nats.RpcNatsTransport(),
    rpc.RpcShmThroughputTransport(),
    rpc.RpcUnixThroughputTransport(),
    rpc.MpManagerTransport(),
    rpc.XmlRpcTransport(),
    rpc.Pyro5Transport(),
    rpc.RpycTransport(),
    rpc.GrpcTransport(),
    # the physical limit
    c.CSpinTransport(),
    c.CHybridTransport(),
    c.CFutexTransport(),
    c.CPipeTransport(),
    c.CSpscTransport(),
    c.CRingTransport(),
    c.CMemcpyTransport(),
    # Sun RPC to one C server (rpcgen): the Python client, then the C client
    oncrpc.SunRpcNullTcp(),
    oncrpc.SunRpcNullUdp(),
    oncrpc.SunRpcEchoTcp(),
    oncrpc.SunRpcEchoUdp(),
    oncrpc.CSunRpcNullTcp(),
    oncrpc.CSunRpcNullUdp(),
    oncrpc.CSunRpcEchoTcp(),
    oncrpc.CSunRpcEchoUdp(),
)


def by_name(extra: tuple[Transport, ...] = ()) -> dict[str, Transport]:
    """Transports by their command-line name (``extra`` adds test-only ones)."""
    return {transport.name: transport for transport in (*TRANSPORTS, *extra)}
