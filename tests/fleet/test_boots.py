# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nodes boot from a server the collection deployed to (run by the molecule scenario pxe_deploy after converge).

Three QEMU guests (TCG) network-boot through tap devices in pxe1's namespace, at once: DHCP from pxe1's dnsmasq
(which names pxe1 as the boot server), every file from pxe1's tftpd-hpa and nginx. BIOS: the server's pxelinux.0,
its pxelinux.cfg/default with the role's managed block, the release's menu, kernel and initrd. UEFI: the release's
GRUB netboot image, the server's grub.cfg with its managed block, then the same over GRUB's TFTP. HTTP: pxelinux with
the HTTP entry (chosen for that guest by a per-MAC pxelinux file, as an operator would), dracut livenet fetching the
root image from nginx. Each console shows the NODE-MARKER record of the booted root, with the plugin; the servers'
logs show who served what.
"""
from __future__ import annotations

import concurrent.futures
import os
import re

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._boot import BootResult, boot_network
from tests.fleet.lab import LABEL, PREFIX, Lab

BOOT_SERVER = "pxe1"
# Generous: a boot takes 30-90 s under TCG, and up to three times longer on a loaded machine.
BOOT_TIMEOUT = 900


@pytest.fixture(scope="module")
def booted(lab: Lab) -> dict[str, BootResult]:
    """The three boots, run at once (each guest has a vCPU thread of its own)."""
    server = lab.servers[BOOT_SERVER]
    http_guest = server.guests["http"]
    per_mac = os.path.join(server.tftp_root, "pxelinux.cfg", "01-" + http_guest.mac.replace(":", "-"))
    with open(per_mac, "w", encoding="ascii") as handle:
        handle.write(f"# this machine boots the HTTP entry\nDEFAULT {LABEL}-http\n"
                     f"INCLUDE {PREFIX}/current/menus/pxelinux.cfg\n")
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            started = {kind: pool.submit(boot_network, f"tap,ifname={guest.tap},script=no,downscript=no",
                                         uefi=kind == "uefi", mac=guest.mac, netns=server.namespace,
                                         timeout=BOOT_TIMEOUT)
                       for kind, guest in server.guests.items()}
            results = {kind: future.result() for kind, future in started.items()}
    finally:
        os.unlink(per_mac)
    for kind, result in results.items():
        with open(os.path.join(lab.runs, f"boot-{kind}.log"), "w", encoding="utf-8") as handle:
            handle.write(result.log)
        print(f"{kind} boot from {BOOT_SERVER}: {'ok' if result.ok else 'FAILED'} in {result.seconds} s")
    return results


def _booted(results: dict[str, BootResult], kind: str) -> dict:
    result = results[kind]
    assert result.ok, f"{kind} boot from {BOOT_SERVER} failed: {result.reason}\n{result.log[-4000:]}"
    assert [plugin["name"] for plugin in result.marker["plugins"]] == ["vendor-agent"], result.marker
    return result.marker


def _release(lab: Lab) -> str:
    return lab.servers[BOOT_SERVER].link("current")


def test_bios_boots_the_current_release_over_tftp(booted, lab):
    marker = _booted(booted, "bios")
    release, guest = _release(lab), lab.servers[BOOT_SERVER].guests["bios"]
    assert f"initrd={PREFIX}/releases/{release}/initrd0.img" in marker["cmdline"].split()
    assert re.search(r"(^|\s)root=live:/\S+-livenet\.iso(\s|$)", marker["cmdline"]), marker["cmdline"]
    assert "BOOTIF=01-" + guest.mac.replace(":", "-") in marker["cmdline"]  # IPAPPEND 2 of the role's entry


def test_uefi_boots_the_current_release_through_grub(booted, lab):
    marker = _booted(booted, "uefi")
    assert marker["cmdline"].startswith(f"BOOT_IMAGE=/{PREFIX}/releases/{_release(lab)}/vmlinuz0 "), marker["cmdline"]
    assert re.search(r"(^|\s)root=live:/\S+-livenet\.iso(\s|$)", marker["cmdline"]), marker["cmdline"]


def test_http_entry_boots_the_root_image_from_nginx(booted, lab):
    marker = _booted(booted, "http")
    server = lab.servers[BOOT_SERVER]
    assert (f"root=live:http://{server.address}/{PREFIX}/releases/{_release(lab)}/squashfs.img"
            in marker["cmdline"].split()), marker["cmdline"]
    assert f"initrd={PREFIX}/releases/{_release(lab)}/initrd0-net.img" in marker["cmdline"].split()


def test_the_servers_logs_show_the_files_came_from_them(booted, lab):
    assert all(result.ok for result in booted.values()), {kind: result.reason for kind, result in booted.items()}
    server = lab.servers[BOOT_SERVER]
    guests, release = server.guests, f"{PREFIX}/releases/{_release(lab)}"
    dhcp, tftp, http = server.log("dnsmasq.log"), server.log("tftpd.log"), server.log("nginx-access.log")
    for kind, guest in guests.items():
        assert re.search(rf"DHCPACK\(\S+\) {re.escape(guest.address)} {guest.mac}", dhcp), (kind, dhcp[-3000:])
    expected = {
        "bios": ["pxelinux.0", "pxelinux.cfg/default", f"{PREFIX}/current/menus/pxelinux.cfg",
                 f"{release}/vmlinuz0", f"{release}/initrd0.img"],
        "uefi": [f"{PREFIX}/current/BOOTX64.EFI", "grub.cfg", f"{PREFIX}/current/menus/grub.cfg",
                 f"{release}/vmlinuz0", f"{release}/initrd0.img"],
        "http": ["pxelinux.0", "pxelinux.cfg/01-" + guests["http"].mac.replace(":", "-"),
                 f"{release}/vmlinuz0", f"{release}/initrd0-net.img"],
    }
    for kind, files in expected.items():
        for name in files:
            assert re.search(rf"RRQ from {re.escape(guests[kind].address)} filename /?{re.escape(name)}\b", tftp), \
                f"{BOOT_SERVER}'s tftpd-hpa log shows no request of {name} from the {kind} guest:\n{tftp[-4000:]}"
    root_fetch = rf'^{re.escape(guests["http"].address)} .*"GET /{re.escape(release)}/squashfs\.img HTTP/1\.1" 200 '
    assert re.search(root_fetch, http, re.M), \
        f"{BOOT_SERVER}'s nginx log shows no root image fetched by the HTTP guest:\n{http[-3000:]}"
    for other in (name for name in lab.servers if name != BOOT_SERVER):
        logs = "".join(lab.servers[other].log(name) for name in ("dnsmasq.log", "tftpd.log", "nginx-access.log"))
        assert not any(guest.address in logs or guest.mac in logs for guest in guests.values()), other
