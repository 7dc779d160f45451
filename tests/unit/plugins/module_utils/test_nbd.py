# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The NBD export against QEMU's own clients (qemu-io, qemu-img) and a raw protocol client; the overlay."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import subprocess

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._blockio import FileRegion
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._nbd import TRANSMISSION_FLAGS, NbdExport
from ansible_collections.ovirt.node_plugins.plugins.module_utils._overlay import (
    ChangedBlock, create_overlay, overlay_changes)

BLOCK = 65536
QEMU_TIMEOUT = 120


def _pattern(size: int) -> bytes:
    """Bytes that differ at every offset (a hash chain), so that a misplaced read shows."""
    out, counter = bytearray(), 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:size])


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "image.raw"
    path.write_bytes(_pattern(2 * 1024 * 1024))
    return str(path)


def _qemu(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=QEMU_TIMEOUT,
                            check=False)
    if check and result.returncode:
        raise AssertionError(f"{argv} failed: {result.stderr}")
    return result


def _qemu_io_read(uri: str, offset: int, length: int) -> bytes:
    """Bytes read by qemu-io from the export (its hexdump parsed back)."""
    output = _qemu("qemu-io", "-r", "-f", "raw", "-c", f"read -v {offset} {length}", uri).stdout
    data = bytearray()
    for line in output.splitlines():
        address, sep, rest = line.partition(":  ")
        if not sep or not all(c in "0123456789abcdef" for c in address):
            continue
        data += bytes.fromhex(rest.split("  ", 1)[0])
    return bytes(data)


# -- a raw client: what QEMU never sends -----------------------------------------------------

class RawClient:
    """The fixed newstyle handshake and simple replies, spoken by hand."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(path)
        magic, opt_magic, flags = struct.unpack(">QQH", self.recv(18))
        assert (magic, opt_magic) == (0x4E42444D41474943, 0x49484156454F5054)
        assert flags == 3
        self.sock.sendall(struct.pack(">I", 3))

    def recv(self, length: int) -> bytes:
        data = b""
        while len(data) < length:
            chunk = self.sock.recv(length - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def option(self, option: int, data: bytes = b"") -> None:
        self.sock.sendall(struct.pack(">QII", 0x49484156454F5054, option, len(data)) + data)

    def option_reply(self) -> tuple[int, int, bytes]:
        magic, option, reply, length = struct.unpack(">QIII", self.recv(20))
        assert magic == 0x3E889045565A9
        return option, reply, self.recv(length)

    def go(self, name: str = "") -> None:
        self.option(7, struct.pack(">I", len(name)) + name.encode() + struct.pack(">H", 0))
        while True:
            _option, reply, _data = self.option_reply()
            if reply == 1:
                return
            assert reply == 3, hex(reply)

    def request(self, command: int, offset: int, length: int, payload: bytes = b"", handle: int = 7) -> int:
        self.sock.sendall(struct.pack(">IHHQQI", 0x25609513, 0, command, handle, offset, length) + payload)
        magic, error, got_handle = struct.unpack(">IIQ", self.recv(16))
        assert (magic, got_handle) == (0x67446698, handle)
        return error


# -- the export --------------------------------------------------------------------------------

def test_qemu_reads_ranges_of_any_alignment(image):
    data = open(image, "rb").read()
    with FileRegion(image) as source, NbdExport(source, label="the test image") as export:
        info = json.loads(_qemu("qemu-img", "info", "--output=json", export.uri).stdout)
        assert info["virtual-size"] == len(data)
        for offset, length in ((0, 1), (1, 511), (4095, 3), (BLOCK - 7, 70000), (len(data) - 13, 13)):
            assert _qemu_io_read(export.uri, offset, length) == data[offset:offset + length], (offset, length)
    assert export.stats.read_requests >= 5
    assert not export.failures


def test_an_export_of_unaligned_size_serves_its_tail(tmp_path):
    path = tmp_path / "odd.raw"
    path.write_bytes(_pattern(BLOCK + 123))
    with FileRegion(str(path)) as source, NbdExport(source, label="odd") as export:
        assert _qemu_io_read(export.uri, BLOCK - 5, 128) == _pattern(BLOCK + 123)[BLOCK - 5:]


def test_several_connections_at_once(image, tmp_path):
    data = open(image, "rb").read()
    with FileRegion(image) as source, NbdExport(source, label="the test image") as export:
        copies = [str(tmp_path / f"copy{n}.raw") for n in range(4)]
        clients = [subprocess.Popen(["qemu-img", "convert", "-O", "raw", export.uri, copy]) for copy in copies]
        assert [client.wait(timeout=QEMU_TIMEOUT) for client in clients] == [0, 0, 0, 0]
    assert export.stats.connections >= 4
    assert export.stats.bytes_served >= 4 * len(data)
    for copy in copies:
        assert open(copy, "rb").read() == data


def test_writes_are_refused_and_the_export_says_it_is_read_only(image):
    with FileRegion(image) as source, NbdExport(source, label="the test image") as export:
        refused = _qemu("qemu-io", "-f", "raw", "-c", "write -P 0x55 0 512", export.uri, check=False)
        assert refused.returncode != 0 and "Permission denied" in refused.stderr
        client = RawClient(export.socket_path)
        client.go()
        assert client.request(1, 0, 512, payload=bytes(512)) == 1  # NBD_CMD_WRITE: EPERM
        assert client.request(4, 0, 512) == 1  # NBD_CMD_TRIM: EPERM
        assert client.request(6, 0, 512) == 1  # NBD_CMD_WRITE_ZEROES: EPERM
        assert client.request(0, 0, 16) == 0  # the stream is still in step: a read works
        assert client.recv(16) == open(image, "rb").read(16)
        client.sock.close()
    assert export.stats.refused_writes == 3
    assert open(image, "rb").read() == _pattern(2 * 1024 * 1024)


def test_handshake_options(image):
    with FileRegion(image) as source, NbdExport(source, label="the test image", name="root") as export:
        assert export.uri.startswith("nbd+unix:///root?socket=")
        client = RawClient(export.socket_path)
        client.option(3)  # LIST
        assert client.option_reply() == (3, 2, struct.pack(">I", 4) + b"root")
        assert client.option_reply() == (3, 1, b"")
        client.option(8)  # STRUCTURED_REPLY: not needed, refused
        assert client.option_reply()[1] == 2**31 + 1
        client.option(6, struct.pack(">I", 5) + b"other" + struct.pack(">H", 0))  # INFO of an unknown export
        assert client.option_reply()[1] == 2**31 + 6
        client.option(6, struct.pack(">I", 4) + b"root" + struct.pack(">HH", 1, 3))  # INFO with block sizes
        replies = [client.option_reply() for _reply in range(3)]
        assert replies[0][2] == struct.pack(">HQH", 0, 2 * 1024 * 1024, TRANSMISSION_FLAGS)
        assert struct.unpack(">HIII", replies[1][2])[:2] == (3, 1)  # minimum block size 1: any alignment
        assert replies[2][1] == 1
        client.option(2)  # ABORT
        assert client.option_reply() == (2, 1, b"")
        client.sock.close()

        old_style = RawClient(export.socket_path)
        old_style.option(1, b"root")  # EXPORT_NAME: size and flags, no padding (the client set NO_ZEROES)
        size, flags = struct.unpack(">QH", old_style.recv(10))
        assert (size, flags) == (2 * 1024 * 1024, TRANSMISSION_FLAGS)
        assert old_style.request(0, size - 8, 16) == 22  # past the end: EINVAL, no data
        assert old_style.request(0, size - 8, 8) == 0
        assert old_style.recv(8) == _pattern(size)[-8:]
        old_style.sock.close()


def test_a_failed_read_reaches_the_client_as_eio_and_is_raised_after(image):
    # A real FileRegion whose file is cut after it was opened: the reads past the cut fail.
    source = FileRegion(image)
    os.truncate(image, 3 * BLOCK + 100)
    with pytest.raises(NodePluginError) as caught:
        with source, NbdExport(source, label="the root image LiveOS/ext3fs.img", path="base.iso",
                               block_size=BLOCK) as export:
            assert _qemu_io_read(export.uri, 0, 512) == _pattern(512)
            failed = _qemu("qemu-io", "-r", "-f", "raw", "-c", f"read {5 * BLOCK + 10} 100", export.uri, check=False)
            assert "Input/output error" in failed.stdout + failed.stderr
    message = str(caught.value)
    assert "the appliance could not read block 5 (of 65536 bytes) of the root image LiveOS/ext3fs.img" in message
    assert message.startswith("base.iso: ")
    assert "ended early" in message
    assert export.failures[0].offset == 5 * BLOCK + 10


def test_the_socket_folder_is_removed_also_on_exceptions(image):
    with FileRegion(image) as source:
        with pytest.raises(RuntimeError):
            with NbdExport(source, label="x") as export:
                folder = os.path.dirname(export.socket_path)
                assert os.stat(folder).st_mode & 0o777 == 0o700
                assert len(export.socket_path) < 108
                raise RuntimeError("boom")
        assert not os.path.exists(folder)
        with pytest.raises(NodePluginError, match="not started"):
            export.socket_path  # pylint: disable=pointless-statement


# -- the overlay -------------------------------------------------------------------------------

def _convert_with_backing(overlay: str, base: str, dest: str) -> bytes:
    """The overlay's full content, its backing given as the base file instead of the (closed) export."""
    spec = {"driver": "qcow2", "file": {"driver": "file", "filename": overlay},
            "backing": {"driver": "raw", "file": {"driver": "file", "filename": base}}}
    _qemu("qemu-img", "convert", "-O", "raw", "json:" + json.dumps(spec), dest)
    return open(dest, "rb").read()


def test_overlay_changes_are_the_written_blocks(image, tmp_path):
    overlay = str(tmp_path / "overlay.qcow2")
    base_size = os.path.getsize(image)
    grown = base_size + 3 * BLOCK
    with FileRegion(image) as source, NbdExport(source, label="base") as export:
        create_overlay(overlay, export.uri, size=grown, block_size=BLOCK)
        _qemu("qemu-io", "-f", "qcow2", "-c", f"write -P 0x41 {BLOCK + 100} 10",  # inside block 1
              "-c", f"write -z {5 * BLOCK} {BLOCK}",  # block 5 becomes zeros
              "-c", f"write -P 0x42 {3 * BLOCK - 1} 2",  # across blocks 2 and 3
              "-c", f"write -P 0x43 {base_size + BLOCK} 1",  # in the grown part
              overlay)
    changes = overlay_changes(overlay, base_size=base_size)
    grown_index = (base_size + BLOCK) // BLOCK
    assert changes.indices == (1, 2, 3, 5, grown_index)
    assert (changes.block_size, changes.base_size, changes.size) == (BLOCK, base_size, grown)
    assert changes.block(5) == ChangedBlock(index=5, length=BLOCK, zero=True, overlay_offset=None)
    assert changes.block(0) is None and changes.data_bytes == 4 * BLOCK

    expected = _convert_with_backing(overlay, image, str(tmp_path / "expected.raw"))
    base = open(image, "rb").read()
    for block in changes.blocks:
        content = changes.read_block(block)
        assert content == expected[block.index * BLOCK:(block.index + 1) * BLOCK]
        if block.index < base_size // BLOCK:
            assert content != base[block.index * BLOCK:(block.index + 1) * BLOCK]
    with FileRegion(image) as source:
        new = changes.new_image(source)
        assert new.size == grown
        assert new.read(0, grown) == expected
        for offset, length in ((BLOCK - 3, 2 * BLOCK + 9), (base_size - 5, 20), (grown - 1, 10), (0, 0)):
            assert new.read(offset, length) == expected[offset:offset + length], (offset, length)


def test_an_untouched_overlay_has_no_changes(image, tmp_path):
    overlay = str(tmp_path / "overlay.qcow2")
    with FileRegion(image) as source, NbdExport(source, label="base") as export:
        create_overlay(overlay, export.uri, size=source.size, block_size=BLOCK)
    changes = overlay_changes(overlay, base_size=os.path.getsize(image))
    assert changes.blocks == () and changes.block_count == 32


def test_overlay_refuses_what_qcow2_cannot_be(tmp_path):
    with pytest.raises(NodePluginError, match="cannot be a qcow2 cluster size"):
        create_overlay(str(tmp_path / "o.qcow2"), "nbd+unix:///?socket=/nonexistent", size=BLOCK, block_size=3000)
    with pytest.raises(NodePluginError, match="not a multiple of 512"):
        create_overlay(str(tmp_path / "o.qcow2"), "nbd+unix:///?socket=/nonexistent", size=1000)
    with pytest.raises(NodePluginError, match="qemu-img"):
        create_overlay(str(tmp_path / "o.qcow2"), "nbd+unix:///?socket=/nonexistent", size=BLOCK)
    assert not os.path.exists(tmp_path / "o.qcow2")
