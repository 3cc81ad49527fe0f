"""kombu's py-amqp transport, with buffered reads and writes.

py-amqp reads every frame with three `recv` calls of exactly the bytes it needs (header,
payload, end octet): nine system calls for a delivery, three for each confirm; it writes each
publish and each ack with its own `sendall`, and sets the socket timeout twice per frame. On
these machines that was most of a stage's CPU (cProfile of the ingress stage: 51,000 `recv`
calls for 5,000 messages). This transport reads up to 64 KiB at a time and cuts frames out of
its buffer, collects outgoing frames until it next reads (nothing ever waits for a reply
without reading, so nothing waits on an unsent frame), and skips the timeout dance when a
whole frame is already buffered. Everything else is py-amqp's and kombu's own. TLS
connections (`amqps://`) keep py-amqp's transport.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

import amqp
import amqp.serialization
import amqp.spec
import amqp.transport
from amqp.exceptions import UnexpectedFrame
from kombu.transport import pyamqp

_CHUNK = 64 * 1024  # below glibc's mmap threshold: a cheap allocation per recv
_HEADER = struct.Struct(">BHI")
_FRAME_END = 0xCE
_WOULD_BLOCK = {errno.EAGAIN, errno.EWOULDBLOCK}


class _Ready:
    """The context `having_timeout` returns when a frame is buffered: no socket calls."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def __enter__(self) -> socket.socket:
        return self.sock

    def __exit__(self, *exc: object) -> bool:
        return False


class BufferedTCPTransport(amqp.transport.TCPTransport):
    def _setup_transport(self) -> None:
        super()._setup_transport()
        self._buffer = bytearray()
        self._pos = 0
        self._out = bytearray()
        self._ready = _Ready(self.sock)

    def write(self, s: bytes | memoryview) -> None:
        # py-amqp hands over a view of a buffer it reuses: copying it in is required anyway.
        self._out += s
        if len(self._out) >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        """Send what `write` collected."""
        if self._out:
            data, self._out = self._out, bytearray()
            try:
                self._write(data)
            except socket.timeout:
                raise
            except OSError as exc:
                if exc.errno not in amqp.transport._UNAVAIL:
                    self.connected = False
                raise

    def having_timeout(self, timeout: float | None) -> Any:
        if timeout is None or self._frame_buffered():
            return self._ready
        return super().having_timeout(timeout)

    def _frame_buffered(self) -> bool:
        available = len(self._buffer) - self._pos
        return available >= 8 and available >= 8 + _HEADER.unpack_from(self._buffer, self._pos)[2]

    def _fill(self, n: int) -> None:
        """Buffer until `n` unread bytes are there. A timeout leaves the buffer as it was, so
        a partly received frame is simply completed by the next call."""
        buffer = self._buffer
        if self._out and len(buffer) - self._pos < n:
            self.flush()  # whatever we wait for may be the answer to what we have not sent
        while len(buffer) - self._pos < n:
            try:
                chunk = self._quick_recv(_CHUNK)
            except socket.timeout:
                raise
            except OSError as exc:
                if exc.errno in _WOULD_BLOCK:  # a non-blocking poll found nothing more
                    raise socket.timeout() from None
                if exc.errno not in amqp.transport._UNAVAIL:
                    self.connected = False
                raise
            if not chunk:
                self.connected = False
                raise OSError("Server unexpectedly closed connection")
            if self._pos:
                del buffer[: self._pos]  # only a partial frame is left: cheap to move
                self._pos = 0
            buffer += chunk

    def read_frame(self, unpack: Any = None) -> tuple[int, int, bytes]:
        self._fill(7)
        frame_type, channel, size = _HEADER.unpack_from(self._buffer, self._pos)
        self._fill(8 + size)
        start = self._pos + 7
        payload = bytes(self._buffer[start : start + size])
        frame_end = self._buffer[start + size]
        self._pos = start + size + 1
        if frame_end != _FRAME_END:
            raise UnexpectedFrame(f"Received frame_end {frame_end:#04x} while expecting 0xce")
        return frame_type, channel, payload


class _Connection(pyamqp.Connection):
    # While the broker may announce connection.blocked, py-amqp polls the socket before every
    # publish (a read and, here, a flush per message). govbus does not use the announcement:
    # a blocked broker stops reading, and TCP holds the publisher back.
    negotiate_capabilities = {**pyamqp.Connection.negotiate_capabilities, "connection.blocked": False}

    def Transport(self, host: str, connect_timeout: float | None, ssl: Any = False,  # noqa: N802 (py-amqp's name)
                  read_timeout: float | None = None, write_timeout: float | None = None,
                  socket_settings: Any = None, **kwargs: Any) -> Any:
        if ssl:
            return super().Transport(host, connect_timeout, ssl, read_timeout, write_timeout, socket_settings, **kwargs)
        return BufferedTCPTransport(
            host, connect_timeout=connect_timeout, read_timeout=read_timeout,
            write_timeout=write_timeout, socket_settings=socket_settings, **kwargs,
        )


class Transport(pyamqp.Transport):
    """Pass as `kombu.Connection(url, transport=Transport)` for amqp:// URLs."""

    Connection = _Connection


# -- publishing without py-amqp's per-message overhead ---------------------------------------
#
# basic_publish builds an amqp.Message, serialises the method arguments and every property
# generically, creates a promise and enters a timeout context for each message: ~60 µs of a
# stage's ~150 µs per message here. A stage publishes to a handful of (exchange, routing key)
# pairs with a handful of distinct header sets, so both encodings are cached; only the message
# id changes per message.

_SHORTSTR = struct.Struct(">B")
_BASIC_PUBLISH = amqp.spec.Basic.Publish
# property flags, in AMQP 0-9-1 basic-properties order
_CONTENT_TYPE, _HEADERS, _DELIVERY_MODE, _CORRELATION_ID, _MESSAGE_ID = 1 << 15, 1 << 13, 1 << 12, 1 << 10, 1 << 7
_CACHE_LIMIT = 4096


def _shortstr(value: str) -> bytes:
    data = value.encode()
    if len(data) > 255:
        raise ValueError(f"AMQP short string longer than 255 bytes: {value[:40]}...")
    return _SHORTSTR.pack(len(data)) + data


class _Content:
    """What py-amqp's frame writer needs of a message: its body and encoded properties."""

    __slots__ = ("body", "_properties")

    def __init__(self, body: bytes, properties: bytes) -> None:
        self.body = body
        self._properties = properties

    def _serialize_properties(self) -> bytes:
        return self._properties


class Publisher:
    """Publishes persistent XML messages with `mandatory` on one py-amqp channel."""

    def __init__(self, channel: amqp.Channel) -> None:
        self.channel = channel
        self._arguments: dict[tuple[str, str], bytes] = {}
        self._tables: dict[tuple[tuple[str, Any], ...], bytes] = {}

    def _table(self, headers: dict[str, Any]) -> bytes:
        try:
            key = tuple(headers.items())
            found = self._tables.get(key)
        except TypeError:  # an unhashable value (a list in x-death, say): encode afresh
            return amqp.serialization.dumps("F", [headers])
        if found is None:
            if len(self._tables) >= _CACHE_LIMIT:
                self._tables.clear()
            found = self._tables[key] = amqp.serialization.dumps("F", [headers])
        return found

    def publish(self, exchange: str, routing_key: str, body: bytes, message_id: str | None,
                correlation_id: str | None, headers: dict[str, Any]) -> None:
        arguments = self._arguments.get((exchange, routing_key))
        if arguments is None:
            if len(self._arguments) >= _CACHE_LIMIT:
                self._arguments.clear()
            arguments = self._arguments[(exchange, routing_key)] = amqp.serialization.dumps(
                "Bssbb", (0, exchange, routing_key, True, False)
            )
        flags = _CONTENT_TYPE | _HEADERS | _DELIVERY_MODE
        tail = b""
        if correlation_id is not None:
            flags |= _CORRELATION_ID
            tail += _shortstr(correlation_id)
        if message_id is not None:
            flags |= _MESSAGE_ID
            tail += _shortstr(message_id)
        properties = b"".join((struct.pack(">H", flags), b"\x0fapplication/xml", self._table(headers), b"\x02", tail))
        connection = self.channel.connection
        if connection is None:
            raise amqp.exceptions.RecoverableConnectionError("publish: connection closed")
        connection.frame_writer(1, self.channel.channel_id, _BASIC_PUBLISH, arguments, _Content(body, properties))
