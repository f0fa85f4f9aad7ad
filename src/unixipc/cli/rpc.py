"""``unixipc rpc ls|call``: look at and call an RPC server from the shell."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any

from ..rpc import CODEC_NAMES, Stream, connect
from ._common import emit, seconds


def register(commands: Any) -> None:
    parser = commands.add_parser("rpc", help="list and call the methods of an RPC server")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("url", help="e.g. unix:///tmp/calc.sock, shm://calc, tcp://host:5000")
    common.add_argument("--timeout", type=seconds, default=10.0, metavar="S", help="default 10")
    common.add_argument("--codec", choices=CODEC_NAMES, default="msgpack")

    ls = verbs.add_parser("ls", parents=[common], help="the server's methods and their docs")
    ls.set_defaults(func=_ls)

    call = verbs.add_parser(
        "call",
        parents=[common],
        help="call a method; print its result (a stream: one item per line)",
        description='Each ARG is JSON (42, 1.5, true, null, [1,2], {"k": 1}, "text"); '
        "an ARG that is not JSON is passed as a string.",
    )
    call.add_argument("method")
    call.add_argument("args", nargs="*", metavar="ARG", type=_value)
    call.add_argument(
        "-k",
        "--keyword",
        type=_keyword,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a keyword argument (VALUE as an ARG)",
    )
    call.set_defaults(func=_call)


def _value(text: str) -> Any:
    """An argument: JSON if it parses, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _keyword(text: str) -> tuple[str, Any]:
    name, equals, value = text.partition("=")
    if not equals or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, _value(value)


def _json_default(value: Any) -> Any:
    """How results JSON cannot hold are shown: bytes as base64, arrays as lists."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"base64": base64.b64encode(value).decode()}
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    return repr(value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _ls(args: argparse.Namespace) -> int:
    with connect(args.url, timeout=args.timeout, codec=args.codec) as client:
        methods = client.methods(timeout=args.timeout)
    if args.json:
        data = [
            {"name": m.name, "signature": m.signature, "doc": m.doc, "streaming": m.streaming}
            for m in methods
        ]
        emit(args, {"url": args.url, "methods": data})
        return 0
    for method in methods:
        summary = method.doc.splitlines()[0] if method.doc else ""
        stream = " (stream)" if method.streaming else ""
        print(f"{method.name}{method.signature}{stream}" + (f"  {summary}" if summary else ""))
    sys.stdout.flush()
    return 0


def _call(args: argparse.Namespace) -> int:
    with connect(args.url, timeout=args.timeout, codec=args.codec) as client:
        result = client.call(args.method, *args.args, timeout=args.timeout, **dict(args.keyword))
        if not isinstance(result, Stream):
            if args.json:
                print(json.dumps({"result": result}, default=_json_default, ensure_ascii=False))
            else:
                print(_text(result))
            return 0
        with result:
            for item in result:
                if args.json:
                    print(json.dumps({"item": item}, default=_json_default, ensure_ascii=False))
                else:
                    print(_text(item))
                sys.stdout.flush()
    return 0
