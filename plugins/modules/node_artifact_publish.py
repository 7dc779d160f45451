#!/usr/bin/python
# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module node_artifact_publish: publish an ISO and its report under a content-addressed URL."""

from __future__ import annotations

DOCUMENTATION = r"""
module: node_artifact_publish
short_description: Publish a Node ISO and its report to a folder served over HTTP, by its sha256
version_added: 1.0.0
author:
  - ovirt.node_plugins maintainers (@ovirt)
description:
  - Copies the files into C(<dest>/<sha256 of the first file>/) with a C(SHA256SUMS) beside them and
    returns the URL of each under O(base_url), the URL under which a web server serves O(dest) (or a
    share mounted there). The first file is the artifact (the ISO); the others are its companions
    (report, signature). A later job, in another container or on another host, fetches the ISO by its
    URL and checks it with the sha256 returned here (ovirt.node_plugins.node_artifact_fetch, the deploy role).
  - A location named by the content never changes what an earlier URL served. Each file is copied beside
    its final name and renamed into place; a file already there with the same sha256 is left alone.
extends_documentation_fragment:
  - ovirt.node_plugins._attributes
  - ovirt.node_plugins._attributes.PLATFORM
attributes:
  check_mode:
    support: full
    details: Computes the folder, URLs and digests; copies nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
  platform:
    platforms: posix
options:
  src:
    description: The files to publish on the host the task runs on, the artifact first (distinct file names).
    type: list
    elements: path
    required: true
  dest:
    description: The folder published artifacts live in (created when missing).
    type: path
    required: true
  base_url:
    description: URL under which O(dest) is served, such as V(http://builder1.example.com/node-artifacts). Unset returns no URLs.
    type: str
requirements:
  - Python 3.11 or newer
seealso:
  - module: ovirt.node_plugins.node_artifact_fetch
"""

EXAMPLES = r"""
- name: Publish the certified ISO and its report
  ovirt.node_plugins.node_artifact_publish:
    src:
      - /var/tmp/ovirt-node-plugins/build/ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso
      - /var/tmp/ovirt-node-plugins/build/ovirt-node-iso-2.5.0-1.0.fc17-vendor-agent.iso.report.json
    dest: /srv/www/node-artifacts
    base_url: http://builder1.example.com/node-artifacts
  register: published

- name: Hand the URL and checksum to the deploy job of an AWX workflow
  ansible.builtin.set_stats:
    data:
      node_pxe_deploy_iso: "{{ published.url }}"
      node_pxe_deploy_iso_checksum: "sha256:{{ published.sha256 }}"
"""

RETURN = r"""
url:
  description: URL of the first file (the ISO); null without O(base_url).
  returned: always
  type: str
  sample: http://builder1.example.com/node-artifacts/5d9e0cbd6f8c2d1d4f3a3c3e1e4bb7a1b0f6f0f5d1a0f4e4c8b9d7e6f5a4b3c0/node.iso
sha256:
  description: sha256 of the first file.
  returned: always
  type: str
folder:
  description: The folder the files were published to, C(<dest>/<sha256>).
  returned: always
  type: str
checksums_url:
  description: URL of the C(SHA256SUMS) of the folder; null without O(base_url).
  returned: always
  type: str
urls:
  description: URL of each file, in the order of O(src).
  returned: always
  type: list
  elements: str
files:
  description: Each file with C(name), published C(path), C(url), C(sha256) and whether it was C(changed) (copied).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ovirt.node_plugins.plugins.module_utils._artifacts import PublishRequest, publish_artifacts
from ansible_collections.ovirt.node_plugins.plugins.module_utils._module import run_engine

ARGUMENT_SPEC = {
    "src": {"type": "list", "elements": "path", "required": True},
    "dest": {"type": "path", "required": True},
    "base_url": {"type": "str"},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    options = {name: module.params[name] for name in ARGUMENT_SPEC}
    options["base_url"] = options["base_url"] or None  # roles pass "" for an unset variable
    request = PublishRequest(check_mode=module.check_mode, **options)
    result = run_engine(module, publish_artifacts, request, outputs=("dest",))
    module.exit_json(**result.to_dict())


if __name__ == "__main__":
    main()
