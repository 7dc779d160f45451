#!/usr/bin/python
# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module node_artifact_fetch: make artifacts given by path or URL local and checked."""

from __future__ import annotations

DOCUMENTATION = r"""
module: node_artifact_fetch
short_description: Fetch ISOs and plugins given by path or URL, checked against their sha256
version_added: 1.0.0
author:
  - ovirt.node_plugins maintainers (@ovirt)
description:
  - Makes each artifact local on the host the task runs on, checked against its checksum. A path is
    taken as it is (and checked when a checksum is given); a URL is downloaded into O(dest) unless a
    file with its checksum is already there.
  - An artifact is a mapping C({src, checksum}) or a line of text C(<path or URL> [sha256:<hex>]), so
    an AWX survey can give one in a text field or several in a text area (one per line; blank lines and
    C(#) comments are skipped). A URL must carry its checksum.
  - Downloads are written beside their final name and renamed into place, checked while they are
    written, and tried again on network errors, HTTP 408, 429 and 5xx and on a wrong checksum, at most
    O(attempts) times; then the artifact is refused with the digest seen and the one expected.
extends_documentation_fragment:
  - ovirt.node_plugins._attributes
  - ovirt.node_plugins._attributes.PLATFORM
attributes:
  check_mode:
    support: full
    details: Checks local files and reports which URLs would be downloaded; downloads nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A URL whose file with the same checksum is already in O(dest) is not downloaded again.
  platform:
    platforms: posix
options:
  artifacts:
    description:
      - The artifacts, in order. Each is a mapping with C(src) (path or URL) and C(checksum)
        (V(sha256:<hex>); V(sha512:<hex>) is accepted too), or text with one C(<path or URL> [sha256:<hex>])
        per line.
    type: list
    elements: raw
    required: true
  dest:
    description: Folder the URLs are downloaded into (created when missing); a download keeps the file name of its URL.
    type: path
    required: true
  attempts:
    description: How many times a download is tried before it is refused.
    type: int
    default: 3
  timeout:
    description: Seconds a connection may stay silent before the attempt counts as failed.
    type: int
    default: 60
requirements:
  - Python 3.11 or newer
seealso:
  - module: ovirt.node_plugins.node_artifact_publish
"""

EXAMPLES = r"""
- name: Fetch a base ISO and two plugins given as survey lines
  ovirt.node_plugins.node_artifact_fetch:
    artifacts:
      - https://mirror.example.com/ovirt-node-iso-2.5.0-1.0.fc17.iso sha256:5d9e...c0
      - |
        https://vendor.example.com/vendor-agent-1.1.plugin.tar.gz sha256:6128...aa
        /srv/plugins/hello-plugin-0.1.plugin.tar.gz
    dest: /var/tmp/ovirt-node-plugins/inputs
  register: inputs

- name: The same with mappings
  ovirt.node_plugins.node_artifact_fetch:
    artifacts:
      - src: https://mirror.example.com/ovirt-node-iso-2.5.0-1.0.fc17.iso
        checksum: sha256:5d9e...c0
    dest: /var/tmp/ovirt-node-plugins/inputs
"""

RETURN = r"""
artifacts:
  description: Each artifact in the order given, with C(src), its local C(path), C(sha256) and whether it was C(downloaded).
  returned: always
  type: list
  elements: dict
  sample:
    - src: https://mirror.example.com/ovirt-node-iso-2.5.0-1.0.fc17.iso
      path: /var/tmp/ovirt-node-plugins/inputs/ovirt-node-iso-2.5.0-1.0.fc17.iso
      sha256: 5d9e0cbd6f8c2d1d4f3a3c3e1e4bb7a1b0f6f0f5d1a0f4e4c8b9d7e6f5a4b3c0
      downloaded: true
paths:
  description: The local paths alone, in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ovirt.node_plugins.plugins.module_utils._artifacts import FetchRequest, fetch_artifacts
from ansible_collections.ovirt.node_plugins.plugins.module_utils._module import run_engine

ARGUMENT_SPEC = {
    "artifacts": {"type": "list", "elements": "raw", "required": True},
    "dest": {"type": "path", "required": True},
    "attempts": {"type": "int", "default": 3},
    "timeout": {"type": "int", "default": 60},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    request = FetchRequest(check_mode=module.check_mode, **{name: module.params[name] for name in ARGUMENT_SPEC})
    result = run_engine(module, fetch_artifacts, request, outputs=("dest",))
    module.exit_json(**result.to_dict())


if __name__ == "__main__":
    main()
