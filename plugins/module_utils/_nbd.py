# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A read-only NBD server for one ``ByteSource``: how an appliance reads an image nobody unpacked.

QEMU (the libguestfs appliance, ``qemu-img``) connects over a unix socket that lives in a private
temporary folder. The server speaks the fixed newstyle handshake (``NBD_OPT_GO``, ``INFO``,
``EXPORT_NAME``, ``LIST``, ``ABORT``) and simple replies; it serves ``NBD_CMD_READ`` of any alignment
from several connections at once and refuses every write (the export says it is read-only, and the
qcow2 overlay above it takes the writes). A read that the source cannot satisfy (a corrupted
squashfs block) goes back to the client as EIO and is remembered: ``check()`` (also run when the
``with`` block ends) raises it as a ``NodePluginError`` that names the block.

No nbdkit: it is not in Debian's default install, a plugin of ours would run in its process (the
lazy readers are Python) and a server in this process shares the source's caches and costs no start.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import re
import selectors
import shutil
import socket
import struct
import tempfile
import threading
import time
import urllib.parse

from ._blockio import ByteSource
from ._errors import NodePluginError
from ._outputs import run_dir
from ._run import LOG

# Protocol constants (NetworkBlockDevice/nbd doc/proto.md).
_NBDMAGIC = 0x4E42444D41474943
_IHAVEOPT = 0x49484156454F5054
_REPLY_MAGIC = 0x3E889045565A9
_REQUEST_MAGIC = 0x25609513
_SIMPLE_REPLY_MAGIC = 0x67446698

_FLAG_FIXED_NEWSTYLE = 1 << 0
_FLAG_NO_ZEROES = 1 << 1
_CLIENT_FLAGS = _FLAG_FIXED_NEWSTYLE | _FLAG_NO_ZEROES

_FLAG_HAS_FLAGS = 1 << 0
_FLAG_READ_ONLY = 1 << 1
_FLAG_CAN_MULTI_CONN = 1 << 8
TRANSMISSION_FLAGS = _FLAG_HAS_FLAGS | _FLAG_READ_ONLY | _FLAG_CAN_MULTI_CONN

_OPT_EXPORT_NAME = 1
_OPT_ABORT = 2
_OPT_LIST = 3
_OPT_INFO = 6
_OPT_GO = 7

_REP_ACK = 1
_REP_SERVER = 2
_REP_INFO = 3
_REP_ERR_UNSUP = 2**31 + 1
_REP_ERR_INVALID = 2**31 + 3
_REP_ERR_UNKNOWN = 2**31 + 6

_INFO_EXPORT = 0
_INFO_BLOCK_SIZE = 3

_CMD_READ = 0
_CMD_WRITE = 1
_CMD_DISC = 2
_CMD_TRIM = 4
_CMD_WRITE_ZEROES = 6

_EPERM = 1
_EIO = 5
_EINVAL = 22

# Bounds on what a client may send: our client is QEMU, but a bound costs nothing.
_MAX_OPTION_DATA = 8192
_MAX_REQUEST = 32 * 1024 * 1024  # QEMU's own NBD_MAX_BUFFER_SIZE
_MAX_IN_FLIGHT = 16  # per connection; QEMU's client keeps at most 16 requests in flight
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes with the terminating NUL
_SOCKET_NAME = "nbd.sock"
_EXPORT_NAME = re.compile(r"[A-Za-z0-9._-]{0,64}")
_REASON_MAX = 300

_HEADER = struct.Struct(">QII")  # option request: IHAVEOPT, option, length
_OPTION_REPLY = struct.Struct(">QIII")
_REQUEST = struct.Struct(">IHHQQI")
_SIMPLE_REPLY = struct.Struct(">IIQ")


class _Disconnect(Exception):
    """The client went away, broke the protocol, or the server is closing: drop the connection."""


@dataclasses.dataclass(frozen=True)
class ReadFailure:
    """A read the source could not satisfy: the client got EIO for these bytes."""

    offset: int
    length: int
    reason: str


@dataclasses.dataclass
class ExportStats:
    """What the clients asked for: connections, reads, bytes served and time spent in the source."""

    connections: int = 0
    read_requests: int = 0
    bytes_served: int = 0
    source_seconds: float = 0.0
    refused_writes: int = 0


def _private_socket_dir() -> str:
    """A new 0700 folder for the socket, short enough for sun_path (TMPDIR may be long)."""
    for base in (run_dir(), tempfile.gettempdir(), "/tmp"):
        if len(os.path.join(base, "nbd-xxxxxxxx", _SOCKET_NAME)) <= _SUN_PATH_MAX:
            return tempfile.mkdtemp(prefix="nbd-", dir=base)
    raise NodePluginError("no temporary folder with a path short enough for a unix socket (108 bytes)",
                          hint="set TMPDIR to a short path such as /tmp")


class NbdExport:
    """Serve ``source`` read-only over NBD on a unix socket until ``close()`` (or the ``with`` block ends).

    ``label`` names the source in error messages (``path`` is the file it comes from, if any);
    ``block_size`` is the read size offered to clients as preferred and the unit that errors are named in.
    ``source.read`` is called from several threads at once and must be thread-safe.
    """

    def __init__(self, source: ByteSource, *, label: str, path: str | None = None, name: str = "",
                 block_size: int = 4096, workers: int = 4) -> None:
        if not _EXPORT_NAME.fullmatch(name):
            raise ValueError(f"export name {name!r}: use up to 64 letters, digits, '.', '_' or '-'")
        if block_size < 512 or block_size & (block_size - 1) or block_size > _MAX_REQUEST:
            raise ValueError(f"block size {block_size} is not a power of two between 512 and {_MAX_REQUEST}")
        self.source = source
        self.size = source.size
        self.label = label
        self.path = path
        self.name = name
        self.block_size = block_size
        self.stats = ExportStats()
        self.failures: list[ReadFailure] = []
        self._workers = workers
        self._lock = threading.Lock()
        self._folder: str | None = None
        self._listener: socket.socket | None = None
        self._wake_r = self._wake_w = -1
        self._accept_thread: threading.Thread | None = None
        self._connections: dict[threading.Thread, socket.socket] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._closing = threading.Event()

    # -- life cycle -------------------------------------------------------------------------
    def __enter__(self) -> NbdExport:
        self.start()
        return self

    def __exit__(self, exc_type, exc, _tb) -> None:
        self.close()
        if self.failures:
            raise self.error() from exc

    @property
    def socket_path(self) -> str:
        if self._folder is None:
            raise NodePluginError("the NBD export is not started")
        return os.path.join(self._folder, _SOCKET_NAME)

    @property
    def uri(self) -> str:
        """The export as QEMU names it: ``nbd+unix:///<name>?socket=<path>``."""
        return f"nbd+unix:///{self.name}?socket={urllib.parse.quote(self.socket_path, safe='/')}"

    def start(self) -> None:
        """Create the socket folder, listen, and serve in background threads."""
        if self._folder is not None:
            return
        self._closing.clear()
        self._folder = _private_socket_dir()
        try:
            self._listener = listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(self.socket_path)
            listener.listen(8)
            self._wake_r, self._wake_w = os.pipe()
        except OSError as exc:
            self._remove_files()
            raise NodePluginError(f"cannot listen on a unix socket: {exc.strerror}", path=self._folder) from exc
        self._pool = pool = concurrent.futures.ThreadPoolExecutor(self._workers, thread_name_prefix="nbd-read")
        self._accept_thread = threading.Thread(target=self._accept_loop, args=(listener, pool), name="nbd-accept",
                                               daemon=True)
        self._accept_thread.start()
        LOG.debug("NBD export of %s (%d bytes) at %s", self.label, self.size, self.socket_path)

    def close(self) -> None:
        """Stop serving: drop the connections, join the threads, remove the socket and its folder."""
        if self._folder is None:
            return
        self._closing.set()
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
        if self._accept_thread is not None:
            self._accept_thread.join()
        with self._lock:
            connections = list(self._connections.items())
        for _thread, conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread, _conn in connections:
            thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._remove_files()
        LOG.debug("NBD export of %s closed: %s", self.label, self.stats)

    def _remove_files(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    # -- errors -----------------------------------------------------------------------------
    def error(self) -> NodePluginError:
        """The first failed read (and how many there were) as a NodePluginError."""
        first = self.failures[0]
        first_block = first.offset // self.block_size
        last_block = (first.offset + max(first.length, 1) - 1) // self.block_size
        blocks = f"block {first_block}" if first_block == last_block else f"blocks {first_block}-{last_block}"
        more = f" ({len(self.failures)} reads failed in all)" if len(self.failures) > 1 else ""
        return NodePluginError(
            f"the appliance could not read {blocks} (of {self.block_size} bytes) of {self.label}{more}",
            path=self.path, details=f"bytes {first.offset}-{first.offset + first.length - 1}: {first.reason}",
            hint="the image is damaged; get an intact copy of it")

    def check(self) -> None:
        """Raise the remembered read failures, if any, as a NodePluginError."""
        if self.failures:
            raise self.error()

    # -- serving ----------------------------------------------------------------------------
    def _accept_loop(self, listener: socket.socket, pool: concurrent.futures.ThreadPoolExecutor) -> None:
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._closing.is_set():
                for key, _events in selector.select():
                    if key.fileobj is not listener or self._closing.is_set():
                        continue
                    try:
                        conn, _address = listener.accept()
                    except OSError:
                        continue
                    thread = threading.Thread(target=self._serve, args=(conn, pool), name="nbd-conn", daemon=True)
                    with self._lock:
                        self._connections[thread] = conn
                        self.stats.connections += 1
                    thread.start()
        finally:
            selector.close()

    def _serve(self, conn: socket.socket, pool: concurrent.futures.ThreadPoolExecutor) -> None:
        try:
            with conn:
                if self._handshake(conn):
                    self._transmission(conn, pool)
        except _Disconnect:
            pass
        except OSError as exc:
            if not self._closing.is_set():
                LOG.debug("NBD connection to %s dropped: %s", self.label, exc)
        finally:
            with self._lock:
                self._connections.pop(threading.current_thread(), None)

    def _handshake(self, conn: socket.socket) -> bool:
        """Negotiate an export; True when the transmission phase starts."""
        conn.sendall(struct.pack(">QQH", _NBDMAGIC, _IHAVEOPT, _FLAG_FIXED_NEWSTYLE | _FLAG_NO_ZEROES))
        (client_flags,) = struct.unpack(">I", _recv_exact(conn, 4))
        if client_flags & ~_CLIENT_FLAGS:
            raise _Disconnect
        no_zeroes = bool(client_flags & _FLAG_NO_ZEROES)
        while True:
            magic, option, length = _HEADER.unpack(_recv_exact(conn, _HEADER.size))
            if magic != _IHAVEOPT or length > _MAX_OPTION_DATA:
                raise _Disconnect
            data = _recv_exact(conn, length)
            if option == _OPT_EXPORT_NAME:
                if data.decode("utf-8", "replace") != self.name:
                    raise _Disconnect  # the protocol has no way to refuse EXPORT_NAME but hanging up
                conn.sendall(struct.pack(">QH", self.size, TRANSMISSION_FLAGS) + (b"" if no_zeroes else bytes(124)))
                return True
            if option == _OPT_ABORT:
                _option_reply(conn, option, _REP_ACK)
                return False
            if option == _OPT_LIST:
                if data:
                    _option_reply(conn, option, _REP_ERR_INVALID)
                    continue
                export_name = self.name.encode()
                _option_reply(conn, option, _REP_SERVER, struct.pack(">I", len(export_name)) + export_name)
                _option_reply(conn, option, _REP_ACK)
            elif option in (_OPT_INFO, _OPT_GO):
                requests = _parse_info_request(data)
                if requests is None:
                    _option_reply(conn, option, _REP_ERR_INVALID)
                    continue
                name, infos = requests
                if name != self.name:
                    _option_reply(conn, option, _REP_ERR_UNKNOWN)
                    continue
                _option_reply(conn, option, _REP_INFO, struct.pack(">HQH", _INFO_EXPORT, self.size, TRANSMISSION_FLAGS))
                if _INFO_BLOCK_SIZE in infos:
                    # Minimum 1: reads of any alignment are served as asked.
                    _option_reply(conn, option, _REP_INFO,
                                  struct.pack(">HIII", _INFO_BLOCK_SIZE, 1, self.block_size, _MAX_REQUEST))
                _option_reply(conn, option, _REP_ACK)
                if option == _OPT_GO:
                    return True
            else:
                # STARTTLS, STRUCTURED_REPLY, meta contexts...: simple replies and plain reads suffice.
                _option_reply(conn, option, _REP_ERR_UNSUP)

    def _transmission(self, conn: socket.socket, pool: concurrent.futures.ThreadPoolExecutor) -> None:
        send_lock = threading.Lock()
        in_flight = threading.BoundedSemaphore(_MAX_IN_FLIGHT)
        pending: set[concurrent.futures.Future] = set()
        try:
            while True:
                magic, _flags, command, handle, offset, length = _REQUEST.unpack(_recv_exact(conn, _REQUEST.size))
                if magic != _REQUEST_MAGIC:
                    raise _Disconnect
                if command == _CMD_DISC:
                    return
                if command == _CMD_READ:
                    if length > _MAX_REQUEST or offset + length > self.size:
                        _send_reply(conn, send_lock, _EINVAL, handle)
                        continue
                    in_flight.acquire()
                    future = pool.submit(self._read, conn, send_lock, handle, offset, length)
                    future.add_done_callback(lambda _f: in_flight.release())
                    pending.add(future)
                    pending = {f for f in pending if not f.done()}
                    continue
                if command == _CMD_WRITE:
                    if length > _MAX_REQUEST:
                        raise _Disconnect  # cannot skip that much payload safely
                    _recv_exact(conn, length)
                if command in (_CMD_WRITE, _CMD_TRIM, _CMD_WRITE_ZEROES):
                    with self._lock:
                        self.stats.refused_writes += 1
                    _send_reply(conn, send_lock, _EPERM, handle)
                else:
                    _send_reply(conn, send_lock, _EINVAL, handle)
        finally:
            # A disconnect waits for the replies in flight (the protocol asks for it).
            concurrent.futures.wait(pending)

    def _read(self, conn: socket.socket, send_lock: threading.Lock, handle: int, offset: int, length: int) -> None:
        started = time.monotonic()
        try:
            data = self.source.read(offset, length)
            if len(data) != length:
                raise NodePluginError(f"the source returned {len(data)} bytes instead of {length}")
            error = 0
        except Exception as exc:  # any failure is EIO; pylint: disable=broad-exception-caught
            reason = exc.render() if isinstance(exc, NodePluginError) else f"{type(exc).__name__}: {exc}"
            with self._lock:
                self.failures.append(ReadFailure(offset, length, reason[:_REASON_MAX]))
            data, error = b"", _EIO
        with self._lock:
            self.stats.read_requests += 1
            self.stats.bytes_served += len(data)
            self.stats.source_seconds += time.monotonic() - started
        try:
            _send_reply(conn, send_lock, error, handle, data)
        except OSError:
            pass  # the connection is gone; its reader notices


def _recv_exact(conn: socket.socket, length: int) -> bytes:
    buffer = bytearray(length)
    view = memoryview(buffer)
    received = 0
    while received < length:
        count = conn.recv_into(view[received:], length - received)
        if count == 0:
            raise _Disconnect
        received += count
    return bytes(buffer)


def _option_reply(conn: socket.socket, option: int, reply: int, data: bytes = b"") -> None:
    conn.sendall(_OPTION_REPLY.pack(_REPLY_MAGIC, option, reply, len(data)) + data)


def _send_reply(conn: socket.socket, send_lock: threading.Lock, error: int, handle: int, data: bytes = b"") -> None:
    with send_lock:
        conn.sendall(_SIMPLE_REPLY.pack(_SIMPLE_REPLY_MAGIC, error, handle))
        if data:
            conn.sendall(data)


def _parse_info_request(data: bytes) -> tuple[str, set[int]] | None:
    """NBD_OPT_INFO/GO data: name length, name, count of info requests, the requests; None if malformed."""
    if len(data) < 6:
        return None
    (name_length,) = struct.unpack_from(">I", data)
    if 4 + name_length + 2 > len(data):
        return None
    name = data[4:4 + name_length].decode("utf-8", "replace")
    (count,) = struct.unpack_from(">H", data, 4 + name_length)
    rest = data[4 + name_length + 2:]
    if len(rest) != 2 * count:
        return None
    return name, set(struct.unpack(f">{count}H", rest))
