"""``unixipc channel listen|send``: URL-addressed channels from the shell."""

from __future__ import annotations

import argparse
import contextlib
import errno
import sys
import time
from typing import Any

from .._deadline import Deadline
from ..channel import Channel, connect, listen
from ..errors import EndOfChannel
from ._common import add_base64_option, data_argument, emit, message_fields, seconds


def _option(value: str) -> tuple[str, int]:
    """Parse NAME=INTEGER (a channel option such as queue_length=4)."""
    name, equals, number = value.partition("=")
    if not equals or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=INTEGER, got {value!r}")
    try:
        return name, int(number, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {number!r}") from None


def register(commands: Any) -> None:
    parser = commands.add_parser("channel", help="URL-addressed message channels")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    listen_verb = verbs.add_parser(
        "listen", help="accept clients one after another and print every message they send"
    )
    listen_verb.add_argument("url", help="e.g. unix:///tmp/s, tcp://127.0.0.1:5000, mq:///jobs")
    listen_verb.add_argument("--clients", type=int, default=1, metavar="N", help="default 1")
    listen_verb.add_argument("--timeout", type=seconds, default=None, metavar="S")
    listen_verb.add_argument(
        "-o", "--option", type=_option, action="append", default=[], metavar="NAME=INT"
    )
    add_base64_option(listen_verb)
    listen_verb.set_defaults(func=_listen)

    send = verbs.add_parser("send", help="connect and send each TEXT as one message")
    send.add_argument("url")
    send.add_argument(
        "texts", nargs="+", metavar="TEXT", help="messages; - reads one from standard input"
    )
    send.add_argument("--timeout", type=seconds, default=None, metavar="S")
    send.add_argument(
        "-o", "--option", type=_option, action="append", default=[], metavar="NAME=INT"
    )
    send.set_defaults(func=_send)


def _listen(args: argparse.Namespace) -> int:
    """Serve ``--clients`` clients in turn; ``--timeout`` bounds the whole run."""
    deadline = Deadline(args.timeout)
    with listen(args.url, **dict(args.option)) as listener:
        emit(args, {"url": listener.url, "listening": True}, f"listening on {listener.url}")
        for client in range(args.clients):
            channel = listener.accept(timeout=deadline.remaining())
            with channel, contextlib.suppress(EndOfChannel):
                while True:
                    data = channel.receive(timeout=deadline.remaining())
                    if args.json:
                        fields = message_fields(data, force_base64=args.base64)
                        emit(args, {"client": client, **fields})
                    else:
                        sys.stdout.buffer.write(data + b"\n")
                        sys.stdout.flush()
    return 0


def _connect(args: argparse.Namespace, deadline: Deadline) -> Channel:
    """Connect; while --timeout lasts, a listener that is not there yet is waited for
    (as a person would retry), so `listen ... &` followed by `send` needs no sleep."""
    while True:
        try:
            return connect(args.url, timeout=deadline.remaining(), **dict(args.option))
        except OSError as error:
            if error.errno not in (errno.ECONNREFUSED, errno.ENOENT) or deadline.expired():
                raise
            if deadline.blocking:
                raise
            time.sleep(0.05)


def _send(args: argparse.Namespace) -> int:
    deadline = Deadline(args.timeout)
    with _connect(args, deadline) as channel:
        for text in args.texts:
            channel.send(data_argument(text), timeout=deadline.remaining())
    emit(args, {"url": args.url, "messages": len(args.texts)})
    return 0
