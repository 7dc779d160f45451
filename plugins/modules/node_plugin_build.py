#!/usr/bin/python
# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module node_plugin_build: RPMs + recipe + metadata -> an oVirt Node plugin tarball."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_plugin_build
short_description: Package RPMs as an oVirt Node plugin
version_added: 1.0.0
author:
  - ovirt.node_plugins maintainers (@ovirt)
description:
  - Makes C(<name>-<version>.plugin.tar.gz) (plugin format 1, see C(docs/plugin-format.md)) from the
    plugin's own RPMs, the dependencies the target Node image lacks, a kickstart-subset recipe and a
    manifest listing every member's sha256.
  - Dependencies are resolved with libsolv against the target image's packages; only what is missing is
    packed. Every file of every packed RPM must lie under the allowed paths (C(/etc), C(/opt),
    C(/usr/share/man), C(/usr/lib/python*), C(/usr/lib/systemd); kmod plugins also the kernel-module
    paths); every offending file is reported.
  - The tarball is reproducible (same inputs, same bytes) and written next to its final path, then renamed
    into place. An existing identical plugin is left alone and the module reports no change.
  - Runs where the files are (the controller, or the host the task targets).
extends_documentation_fragment:
  - ovirt.node_plugins._attributes
  - ovirt.node_plugins._attributes.PLATFORM
attributes:
  check_mode:
    support: full
    details: Resolves and checks everything and reports whether the plugin would change; writes nothing.
      With O(sign_key) and a plugin that would change, RV(sha256) is null (the signature is not made).
  diff_mode:
    support: none
  idempotent:
    support: full
    details: Without E(SOURCE_DATE_EPOCH), an unchanged plugin keeps the creation time of the existing file.
  platform:
    platforms: posix
options:
  name:
    description: Plugin name (letters, digits, C(.) C(_) C(+) C(-)).
    type: str
    required: true
  version:
    description: Plugin version, rpm style without a dash, for example C(1.0).
    type: str
    required: true
  vendor:
    description: Who makes the plugin.
    type: str
    default: ""
  summary:
    description: One line saying what the plugin does.
    type: str
    default: ""
  rpms:
    description: The plugin's own RPM files (role C(plugin) in the manifest).
    type: list
    elements: path
    required: true
  repos:
    description:
      - Where dependencies come from, in order. Each is a folder of RPMs, or an rpm-md repository
        (a folder with C(repodata/), or a C(file://), C(http://) or C(https://) URL).
      - Empty means the plugin's RPMs must need nothing beyond the target image.
    type: list
    elements: str
    default: []
  target_iso:
    description:
      - The Node ISO the plugin is for; its installed packages are read from the image.
      - Exactly one of O(target_iso) and O(target_packages) is required.
    type: path
  target_packages:
    description:
      - The Node's package list instead of the ISO - C(isolinux/manifest-rpm.txt), C(rpm -qa) output,
        or JSON (a list of objects with C(name), C(epoch), C(version), C(release), C(arch), C(provides)).
      - A text list gives each package's name and version only; requirements on sonames need the ISO or JSON.
    type: path
  node_product:
    description: Node product the plugin is for. Empty means any product.
    type: str
    default: ""
  node_versions:
    description: Compatible Node versions, for example C(>=2.5.0, <2.6) (comma means and). C(*) means any.
    type: str
    default: "*"
  recipe:
    description:
      - Kickstart-subset recipe file. When not given, the recipe installs the O(rpms) from the plugin's C(rpms/).
    type: path
  persist:
    description: Absolute paths to keep across reboots on stateful Node installs. Empty means none.
    type: list
    elements: str
    default: []
  allow_paths:
    description:
      - Paths allowed in addition to the standard ones, recorded in the manifest as overrides. Empty means none.
    type: list
    elements: str
    default: []
  kind:
    description: C(kmod) for kernel-module plugins, which may also install under the kernel-module paths.
    type: str
    choices: [standard, kmod]
    default: standard
  keyring:
    description: Public key file; when given, every packed RPM must be signed by one of its keys.
    type: path
  sign_key:
    description: GnuPG key (id, fingerprint or user id) that signs C(manifest.json) (C(manifest.json.asc)).
    type: str
  gnupg_home:
    description: GnuPG home holding O(sign_key). When not given, gpg's default is used.
    type: path
  output:
    description: The plugin file to write, or an existing folder to write C(<name>-<version>.plugin.tar.gz) into.
    type: path
    required: true
notes:
  - Set E(SOURCE_DATE_EPOCH) to fix the manifest's C(created) time and the members' timestamps.
seealso:
  - name: Plugin format
    description: Every manifest field and the reading rules.
    link: https://github.com/ovirt/ovirt-node-plugins/blob/main/docs/plugin-format.md
  - name: Plugin writer's guide
    description: How to package a plugin.
    link: https://github.com/ovirt/ovirt-node-plugins/blob/main/docs/plugin-writers-guide.md
requirements:
  - python3-rpm, python3-solv, pykickstart, jsonschema
  - gpg (for O(keyring) and O(sign_key))
"""

EXAMPLES = r"""
- name: Package the vendor agent for Node 2.5.x
  ovirt.node_plugins.node_plugin_build:
    name: vendor-agent
    version: "1.0"
    vendor: Example Corp.
    summary: Monitoring agent for oVirt Node
    rpms:
      - build/vendor-agent-1.0-1.noarch.rpm
    repos:
      - build/deps
    target_iso: images/ovirt-node-iso-2.5.0-1.0.fc17.iso
    node_product: ovirt-node-iso
    node_versions: ">=2.5.0, <2.6"
    persist:
      - /etc/vendor-agent/agent.conf
    output: dist/

- name: Package against a package list and sign the manifest
  ovirt.node_plugins.node_plugin_build:
    name: vendor-agent
    version: "1.0"
    rpms: [build/vendor-agent-1.0-1.noarch.rpm]
    repos: ["https://repo.example.com/el6/x86_64/"]
    target_packages: images/manifest-rpm.txt
    recipe: plugin/recipe.ks
    sign_key: vendor@example.com
    output: dist/vendor-agent-1.0.plugin.tar.gz
"""

RETURN = r"""
path:
  description: The plugin file.
  returned: always
  type: str
  sample: /srv/dist/vendor-agent-1.0.plugin.tar.gz
sha256:
  description: sha256 of the plugin file (null in check mode when a signature would have to be made).
  returned: always
  type: str
  sample: 832adc9aa1910feffa13c12e264e7e716461aa6f32618547e3aeac5438daaa66
size:
  description: Size of the plugin file in bytes (null when RV(sha256) is).
  returned: always
  type: int
  sample: 24391
packages:
  description: The packed RPMs, the plugin's own first.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Package name.
      type: str
      returned: always
    nevra:
      description: name-[epoch:]version-release.arch.
      type: str
      returned: always
    role:
      description: C(plugin) for the given RPMs, C(dependency) for what the resolver added.
      type: str
      returned: always
    file:
      description: Member name in the tarball.
      type: str
      returned: always
    size:
      description: Size in bytes.
      type: int
      returned: always
    sha256:
      description: sha256 of the RPM file.
      type: str
      returned: always
    signed:
      description: Whether the RPM carries a signature.
      type: bool
      returned: always
    key_id:
      description: Id of the key that signed it, or null.
      type: str
      returned: always
  sample:
    - name: vendor-agent
      nevra: vendor-agent-1.0-1.noarch
      role: plugin
      file: rpms/vendor-agent-1.0-1.noarch.rpm
      size: 6049
      sha256: 762f28ef351a6018f87899de1b877df1354051ff1d69504fbfa40226ac9d1ea4
      signed: false
      key_id: null
manifest:
  description: The content of C(manifest.json) (see C(docs/plugin-format.md)).
  returned: always
  type: dict
  sample:
    format: 1
    name: vendor-agent
    version: "1.0"
satisfied_by_image:
  description: Requirements of the packed RPMs that the target image already satisfies, with the image's package.
  returned: always
  type: list
  elements: str
  sample:
    - "libvendorbase.so.1()(64bit) (needed by vendor-agent-lib) <- libvendorbase-3.2-1.x86_64"
durations:
  description: Seconds spent in each stage.
  returned: always
  type: dict
  sample:
    read packages: 0.02
    resolve dependencies: 0.01
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ovirt.node_plugins.plugins.module_utils._choices import PLUGIN_KINDS
from ansible_collections.ovirt.node_plugins.plugins.module_utils._module import run_engine
from ansible_collections.ovirt.node_plugins.plugins.module_utils._packager import PluginBuildRequest, build_plugin

ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "version": {"type": "str", "required": True},
    "vendor": {"type": "str", "default": ""},
    "summary": {"type": "str", "default": ""},
    "rpms": {"type": "list", "elements": "path", "required": True},
    "repos": {"type": "list", "elements": "str", "default": []},
    "target_iso": {"type": "path"},
    "target_packages": {"type": "path"},
    "node_product": {"type": "str", "default": ""},
    "node_versions": {"type": "str", "default": "*"},
    "recipe": {"type": "path"},
    "persist": {"type": "list", "elements": "str", "default": []},
    "allow_paths": {"type": "list", "elements": "str", "default": []},
    "kind": {"type": "str", "choices": list(PLUGIN_KINDS), "default": "standard"},
    "keyring": {"type": "path"},
    "sign_key": {"type": "str", "no_log": False},
    "gnupg_home": {"type": "path"},
    "output": {"type": "path", "required": True},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           required_one_of=[("target_iso", "target_packages")],
                           mutually_exclusive=[("target_iso", "target_packages")])
    request = PluginBuildRequest(check_mode=module.check_mode, **{name: module.params[name] for name in ARGUMENT_SPEC})
    requires = ("rpm", "solv", "jsonschema", "pykickstart") + (("pycdlib",) if request.target_iso else ())
    result = run_engine(module, build_plugin, request, requires=requires, outputs=("output",))
    module.exit_json(**result.to_dict())


if __name__ == "__main__":
    main()
