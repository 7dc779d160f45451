# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The choice lists users see in module options and command flags, declared once.

No imports beyond the standard library: module argument specs read these before any optional
library (pycdlib, rpm, guestfs) is known to be installed.
"""

from __future__ import annotations

# Squashfs compressors mksquashfs writes (the superblock's compression ids 1-6).
COMPRESSORS = ("gzip", "xz", "zstd", "lzo", "lz4", "lzma")
# What node_iso_verify boots: nothing, from CD with BIOS or UEFI, or every path (CD and disk, BIOS and UEFI).
BOOT_TESTS = ("none", "bios", "uefi", "all")
# When node_plugin_apply relabels the root image for SELinux.
SELINUX_RELABEL = ("auto", "always", "never")
# Plugin kinds and the allowed paths each adds (see _rpmhdr.allowed_paths).
PLUGIN_KINDS = ("standard", "kmod")
