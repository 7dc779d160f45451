# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import bz2

import pytest

from ansible_collections.ovirt.node_plugins.plugins.module_utils import _records as records
from ansible_collections.ovirt.node_plugins.plugins.module_utils._errors import NodePluginError


def test_plugin_record_has_no_space_after_colons_and_round_trips():
    text = records.plugin_record("vendor-agent", "1.0-1.noarch", "Wed Nov 25 12:00:00 2026")
    assert text == "Name:vendor-agent\nVersion:1.0-1.noarch\nInstall Date:Wed Nov 25 12:00:00 2026\n"
    assert records.parse_plugin_record(text) == {
        "Name": "vendor-agent", "Version": "1.0-1.noarch", "Install Date": "Wed Nov 25 12:00:00 2026"}


def test_firewall_files_are_not_plugin_records():
    assert records.parse_plugin_record("7777,tcp\n# comment\n") is None


def test_dir_manifest_keeps_directories_only():
    lines = ["drwxr-xr-x /opt/vendor", "-rw-r--r-- /opt/vendor/file", "drwxr-xr-x /etc", "drwxr-xr-x /etc"]
    assert records.normalize_manifest("dir", lines) == ["/etc", "/opt/vendor"]


def test_large_manifests_are_bzip2_and_small_ones_text():
    assert records.encode_manifest("rpm", ["a-1-1.noarch (none)"]) == b"a-1-1.noarch (none)\n"
    compressed = records.encode_manifest("file", ["/etc/a"])
    assert bz2.decompress(compressed) == b"/etc/a\n"
    assert records.decode_manifest("file", compressed) == ["/etc/a"]


def test_delta_lists_removed_and_added_sorted():
    before = ["a-1-1.noarch (none)", "b-1-1.noarch (none)"]
    after = ["a-1-1.noarch (none)", "b-2-1.noarch (none)", "c-1-1.noarch (none)"]
    assert records.delta(before, after) == [
        "- b-1-1.noarch (none)", "+ b-2-1.noarch (none)", "+ c-1-1.noarch (none)"]


def test_update_numbers_count_up():
    assert records.next_update_number([]) == 1
    assert records.next_update_number(["update1", "update3", "isolinux.cfg", "updateX"]) == 4


def test_update_files_and_links():
    files = records.update_files(2, {"rpm": ["a (none)"]}, {"rpm": ["a (none)", "b (none)"]}, ["b 1-1"])
    assert files["delta-manifest-rpm.txt"] == b"+ b (none)\n"
    assert files["installed_plugins"] == b"b 1-1\n"
    assert set(files) >= {f"manifest-{kind}.txt" for kind in records.MANIFEST_KINDS}
    assert records.current_manifest_links(2)["current-manifest-rpm.txt"] == "update2/manifest-rpm.txt"
    with pytest.raises(ValueError):
        records.update_files(0, {}, {}, [])


@pytest.mark.parametrize(("text", "unsigned", "expected"), [
    ("oVirt Node Hypervisor release 2.5.0 (1.0.fc17)\n", False, "oVirt Node Hypervisor release 2.5.0 (1.0.fc17) (Edited)\n"),
    ("oVirt Node Hypervisor release 2.5.0 (1.0.fc17)", True, "oVirt Node Hypervisor release 2.5.0 (1.0.fc17) (Edited, Unsigned)\n"),
    ("X release 1 (1) (Edited)\n", False, "X release 1 (1) (Edited)\n"),
    ("X release 1 (1) (Edited)\n", True, "X release 1 (1) (Edited, Unsigned)\n"),
    ("X release 1 (1) (Edited, Unsigned)\n", False, "X release 1 (1) (Edited, Unsigned)\n"),
])
def test_edited_mark_is_added_once_and_unsigned_sticks(text, unsigned, expected):
    assert records.edited_system_release(text, unsigned=unsigned) == expected


def test_build_record_round_trip_and_digest_stability():
    digest = records.inputs_digest("ab" * 32, ["cd" * 32], {"extra_kernel_args": ["x=1"]})
    assert digest == records.inputs_digest("ab" * 32, ["cd" * 32], {"extra_kernel_args": ["x=1"]})
    assert digest != records.inputs_digest("ab" * 32, ["cd" * 32], {"extra_kernel_args": ["x=2"]})
    record = records.BuildRecord(base_sha256="ab" * 32, base_volume_id="v", plugins=[], options={},
                                 inputs_digest=digest, update=1, packages={}, kernel_args={}, created="c")
    assert records.BuildRecord.from_json(record.to_json()) == record


def test_foreign_build_record_is_refused():
    with pytest.raises(NodePluginError, match="unsupported build record format"):
        records.BuildRecord.from_json(b'{"format": 99}')
    with pytest.raises(NodePluginError, match="not valid JSON"):
        records.BuildRecord.from_json(b"{")


def test_array_queries_repeat_the_package_name_with_the_equals_form():
    # rpm refuses a scalar beside an array in an iterator unless it is written %{=TAG}.
    assert "%{=NAME}" in records.QUERY_FORMATS["owns"] and "%{=NAME}" in records.QUERY_FORMATS["deps"]


def test_combined_query_output_is_split_by_kind():
    output = ("rpm\ta-1-1.noarch (none)\nfile\t/etc/a\ndir\tdrwxr-xr-x /etc\ndir\t-rw-r--r-- /etc/a\n"
              "owns\t/etc/a a\ndeps\ta: /bin/sh\nnoise line\n")
    manifests = records.split_combined(output)
    assert manifests["rpm"] == ["a-1-1.noarch (none)"]
    assert manifests["dir"] == ["/etc"]
    assert manifests["owns"] == ["/etc/a a"] and manifests["deps"] == ["a: /bin/sh"]
    assert records.nevras_of(manifests["rpm"]) == ["a-1-1.noarch"]
    assert records.combined_query().startswith("rpm\\t")
