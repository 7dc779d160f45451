# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_pxe pure parts: kernel argument rewriting, menu rendering (golden files), menu checks."""
from __future__ import annotations

import hashlib
import os

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils._bootcfg import KernelArgEdits
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError
from ansible_collections.ovirt.node_plugins.plugins.module_utils._pxe import (IsoBootFacts, PxeTreeRequest,
                                                                              check_grub,
                                                                              check_pxelinux, http_kernel_args,
                                                                              pxe_kernel_args, read_sums,
                                                                              render_menus, write_sums)

DATA = os.path.join(os.path.dirname(__file__), "data", "pxe")
VOLID = "ovirt-node-iso-2.5.0-1.0.fc17"
ISO_ARGS = ["initrd=initrd0.img", f"root=live:CDLABEL={VOLID}", "rootfstype=auto", "ro", "rd.live.image", "quiet",
            "console=ttyS0"]
FACTS = IsoBootFacts(volume_id=VOLID, version="2.5.0-1.0.fc17", product="oVirt Node Hypervisor",
                     kernel="/isolinux/vmlinuz0", initrd="/isolinux/initrd0.img", kernel_args=ISO_ARGS)


def test_pxe_args_follow_livecd_iso_to_pxeboot():
    args = pxe_kernel_args(ISO_ARGS, volume_id=VOLID, iso_name="node.iso", initrd="node/current/initrd0.img")
    assert args == ["initrd=node/current/initrd0.img", "rootflags=loop", "root=live:/node.iso", "rootfstype=auto",
                    "ro", "rd.live.image", "quiet", "console=ttyS0"]


def test_pxe_args_accept_the_udev_escaped_label_and_drop_the_md5_check():
    words = ["root=live:CDLABEL=My\\x20Node", "rd.live.check", "rootflags=ro"]
    assert pxe_kernel_args(words, volume_id="My Node", iso_name="a.iso", initrd="initrd0.img") == [
        "initrd=initrd0.img", "rootflags=loop", "root=live:/a.iso"]


def test_pxe_args_refuse_an_entry_that_does_not_boot_by_label():
    with pytest.raises(NodePluginError, match="no root=live:CDLABEL=ovirt-node"):
        pxe_kernel_args(["root=/dev/sda1"], volume_id=VOLID, iso_name="a.iso", initrd="initrd0.img")


def test_http_args_point_livenet_at_the_squashfs():
    args = http_kernel_args(ISO_ARGS + ["rd.live.check"], squashfs_url="http://s/n/squashfs.img", initrd="i.img")
    assert args == ["initrd=i.img", "root=live:http://s/n/squashfs.img", "rootfstype=auto", "ro", "rd.live.image",
                    "quiet", "console=ttyS0", "ip=dhcp"]
    keeps_ip = http_kernel_args(["root=x", "ip=eth0:dhcp"], squashfs_url="http://s/q", initrd="i")
    assert keeps_ip == ["initrd=i", "root=live:http://s/q", "ip=eth0:dhcp"]


def test_arg_edits_remove_by_name_and_add_once():
    def apply(words, edits):
        return KernelArgEdits.parse(edits).apply(words)
    assert apply(["quiet", "console=tty0", "ro"], ["!quiet", "!console", "ro", "vendor.debug=1"]) == [
        "ro", "vendor.debug=1"]
    assert apply(["console=tty0", "console=ttyS0"], ["!console=tty0"]) == ["console=ttyS0"]


def test_menus_drop_a_quoted_argument_the_iso_configs_drop_too():
    """The case that once differed: !console=ttyS0 against console="ttyS0" (ISO config and PXE menu)."""
    facts = IsoBootFacts(volume_id=VOLID, version="2.5.0-1.0.fc17", product="oVirt Node Hypervisor",
                         kernel="/isolinux/vmlinuz0", initrd="/isolinux/initrd0.img",
                         kernel_args=ISO_ARGS[:-1] + ['console="ttyS0"'])
    request = PxeTreeRequest(src="/x.iso", dest="/tmp/t", extra_kernel_args=["!console=ttyS0"])
    for relative, text in render_menus(request, facts, "node.iso", "header").items():
        assert "ttyS0" not in text, relative


def _menus(**options) -> dict[str, str]:
    request = PxeTreeRequest(src="/x.iso", dest="/tmp/t", **options)
    return render_menus(request, FACTS, "node.iso", "Generated for a test")


@pytest.mark.parametrize("case, options", [
    ("plain", {}),
    ("full", {"menu_prefix": "node/current/", "ipappend": True, "http_url": "http://pxe.example.com/tftp/node/current",
              "serial": "0 115200", "timeout": 3, "title": "Node's custom", "extra_kernel_args": ["!quiet", "a=$b"]}),
])
def test_menus_match_golden_files(case, options, tmp_path):
    for relative, text in _menus(**options).items():
        golden = os.path.join(DATA, case, relative)
        if os.environ.get("REGENERATE_GOLDEN"):
            os.makedirs(os.path.dirname(golden), exist_ok=True)
            with open(golden, "w", encoding="utf-8") as handle:
                handle.write(text)
        with open(golden, encoding="utf-8") as handle:
            assert text == handle.read(), f"{case}/{relative} differs from its golden file"
        if relative.endswith(".cfg") and "grub" in relative:
            path = tmp_path / relative.replace("/", "_")
            path.write_text(text, encoding="utf-8")
            assert "grub-script-check passed" in check_grub(str(path))
        else:
            assert check_pxelinux(text) == []


def test_grub_menu_quotes_special_words_and_prefixes_paths():
    text = _menus(menu_prefix="node/current/", extra_kernel_args=["a=$b;c"])["menus/grub.cfg"]
    assert "\tlinux /node/current/vmlinuz0 rootflags=loop root=live:/node.iso" in text
    assert "'a=$b;c'" in text and "initrd=" not in text
    assert "set default" not in text  # entries only: the server's grub.cfg keeps its own default


def test_pxelinux_check_finds_structural_problems():
    broken = "DEFAULT missing\nTIMEOUT soon\nLABEL a\n  KERNEL vmlinuz0\nLABEL a\n  APPEND x\n  IPAPPEND 7\nFROB 1\n"
    problems = check_pxelinux(broken)
    assert "line 2: TIMEOUT 'soon' is not a number" in problems
    assert "line 5: LABEL 'a' is empty or repeated" in problems
    assert "line 7: IPAPPEND '7' (expected 1, 2 or 3)" in problems
    assert "line 8: unknown keyword 'frob'" in problems
    assert "DEFAULT missing names no LABEL" in problems


def test_grub_check_reports_syntax_errors(tmp_path):
    path = tmp_path / "grub.cfg"
    path.write_text("menuentry 'x' {\n linux /v\n", encoding="utf-8")
    with pytest.raises(NodePluginError, match="grub-script-check"):
        check_grub(str(path))


def test_sums_cover_every_file_but_themselves(tmp_path):
    (tmp_path / "pxelinux.cfg").mkdir()
    (tmp_path / "pxelinux.cfg" / "default").write_text("DEFAULT a\n", encoding="utf-8")
    (tmp_path / "vmlinuz0").write_bytes(b"kernel")
    digest = write_sums(str(tmp_path))
    sums = read_sums(str(tmp_path / "SHA256SUMS"))
    assert sorted(sums) == ["pxelinux.cfg/default", "vmlinuz0"]
    assert sums["vmlinuz0"] == hashlib.sha256(b"kernel").hexdigest()
    assert digest == hashlib.sha256((tmp_path / "SHA256SUMS").read_bytes()).hexdigest()
