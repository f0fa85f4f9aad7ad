"""The implementation of :mod:`unixipc.channel`: a channel core and one driver per scheme.

Public names come from :mod:`unixipc.channel` (and :mod:`unixipc.aio`); nothing
here is a public API. The layers, each importing only those before it:

``core``        what a channel end and a listener mean, once: sticky endings, who
                says goodbye, close() waking every waiter, options, the hooks of
                authentication and event loops (``Link``, ``Acceptor``, ``WaitSpec``)
``frames``      messages as length-prefixed frames over byte streams (``ByteLink``)
``pieces``      messages as pieces over message facilities (``PieceLink``)
``liveness``    tokens that tell a peer's close from its death (queues)
``rendezvous``  connecting through a well-known inbox (FIFO, queues, rings)
``url``         splitting URLs and the address checks drivers share
drivers         ``pipe``, ``socket``, ``fifo``, ``mq``, ``sysvmq``, ``shm``: a link,
                its address parser, listen/connect/pair, options with defaults
``registry``    the table from scheme (and pair kind) to driver

A new scheme is one driver module and one entry in ``registry``.
"""
