#!/usr/bin/python
# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module node_plugin_hotadd: the documentation of the action plugin of the same name."""

from __future__ import annotations

DOCUMENTATION = r"""
module: node_plugin_hotadd
short_description: Add a plugin to a running oVirt Node without a reboot
version_added: 1.0.0
author:
  - ovirt.node_plugins maintainers (@ovirt)
description:
  - Installs the packages of a plugin on the running Node the task targets, with the Node's own
    C(rpm) in one transaction (dependencies checked by rpm; an older version of the plugin is
    upgraded), runs the recipe's C(%post) scripts there, and writes the C(/etc/ovirt-plugins.d)
    records a rebuilt ISO would have.
  - Runs on the controller as an action plugin. The Node needs no Python (Nodes of that era have
    Python 2 at best); files go with the connection's transfer, commands run with the Node's
    C(/bin/sh). Log in as root (C(ansible_user=root)); C(become) is not supported.
  - Checks the plugin first as a rebuild does (digests, signature policy, allowed paths) and its
    Node version range against the running Node (C(/etc/default/version), else
    C(/etc/system-release)). Refuses, before changing anything, a recipe that uses what a running
    Node cannot take (V(part), V(bootloader), C(%pre), C(%post --nochroot)), naming each directive;
    a Node ISO rebuilt with the plugin (M(ovirt.node_plugins.node_plugin_apply)) carries it.
  - What it installs lasts until the Node reboots; only a rebuilt ISO keeps it (the task's C(msg)
    says what changed and for how long). The plugin's
    declared C(persist) paths are persisted through the Node's own C(persist) command when the
    Node is stateful (a config volume at C(/config)), so an edit of them survives a reboot; on a
    stateless Node the result and a warning say which paths are not kept.
  - A transaction that fails changes nothing. A failing package scriptlet or recipe C(%post) makes
    the packages this task installed be erased again, and no record is written (an upgraded package
    stays at its new version until the Node reboots).
extends_documentation_fragment:
  - ovirt.node_plugins._attributes
  - ovirt.node_plugins._attributes.PLATFORM
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: Reads the Node, plans, and lets the Node's rpm test the transaction (C(rpm -U --test)); nothing is installed.
  diff_mode:
    support: full
    details: Shows the plugin's packages on the Node before and after.
  idempotent:
    support: full
    details: A second run finds every package, record and persisted path in place and reports no change.
  platform:
    platforms: posix
options:
  plugin:
    description:
      - The plugin tarball (C(<name>-<version>.plugin.tar.gz)) on the controller. A relative path is
        looked up like a file of the role or playbook (its C(files/) folder).
    type: path
    required: true
  checksum:
    description: V(sha256:<hex>) the plugin tarball must have. Unset skips this check (the manifest's digests are always checked).
    type: str
  require_signed:
    description: Refuse a plugin whose packages are unsigned, or whose manifest signature does not verify with O(keyring).
    type: bool
    default: false
  keyring:
    description: OpenPGP public keys the manifest signature must verify with. Unset accepts an unsigned manifest.
    type: path
  allow_unlisted_paths:
    description:
      - Install packages even when they put files outside the allowed paths of the plugin writer's
        guide. Use only for plugins you trust; the check runs before anything is copied.
    type: bool
    default: false
  persist:
    description:
      - Persist the plugin's declared C(persist) paths through the Node's own C(persist) command on a
        stateful Node. V(false) leaves them unpersisted (and says so).
    type: bool
    default: true
notes:
  - Hot-add does not downgrade. To go back, reboot the Node (it returns to its image) or hot-add the
    matching release.
requirements:
  - rpm with its Python bindings, jsonschema and pykickstart on the controller
  - on the Node, C(/bin/sh), its own C(rpm) and, for persistence, its C(persist) command or C(ovirt-functions)
seealso:
  - module: ovirt.node_plugins.node_plugin_apply
  - module: ovirt.node_plugins.node_plugin_build
"""

EXAMPLES = r"""
- name: Hot-add the vendor agent to every Node, one at a time
  hosts: nodes
  gather_facts: false
  serial: 1
  tasks:
    - name: Hot-add vendor-agent 1.1
      ovirt.node_plugins.node_plugin_hotadd:
        plugin: /srv/plugins/vendor-agent-1.1.plugin.tar.gz
        checksum: sha256:6128a4b1c0e3e0b6c5b8a9f4a2d3e1c0b9a8f7e6d5c4b3a2918f7e6d5c4b3a29
        keyring: /etc/pki/vendor.asc
        require_signed: true
      register: hotadd

    - name: Say what a reboot would lose
      ansible.builtin.debug:
        msg: "{{ hotadd.lasts }}"
"""

RETURN = r"""
reason:
  description: V(hot-added), V(would hot-add), V(already hot-added ...) or what was completed.
  returned: always
  type: str
target:
  description: The inventory host the plugin was added to.
  returned: always
  type: str
plugin:
  description: The plugin (name, version, sha256, path, signer, persist).
  returned: always
  type: dict
node:
  description: The running Node (product, version, release, source of the version, stateful).
  returned: always
  type: dict
packages:
  description: The plugin's packages on the Node after the task (C(name-version-release.arch) by name).
  returned: always
  type: dict
packages_before:
  description: The same packages before the task (null for a package the Node did not have).
  returned: always
  type: dict
installed:
  description: Packages installed or upgraded by the task (would be, in check mode).
  returned: always
  type: list
  elements: str
upgraded:
  description: Packages upgraded (name, from, to).
  returned: always
  type: list
  elements: dict
records:
  description: The C(/etc/ovirt-plugins.d) records written.
  returned: always
  type: list
  elements: str
persist:
  description:
    - The declared paths (C(declared)) and what became of them on this Node, each a list of paths;
      C(persisted), C(already), C(not_kept) (stateless Node), C(missing) (does not exist), C(failed).
  returned: always
  type: dict
lasts:
  description: How long the change lasts (until the Node reboots, unless the ISO is rebuilt with the plugin).
  returned: always
  type: str
steps:
  description: Output of every step that ran on the Node (step, exit_status, output).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ovirt.node_plugins.plugins.module_utils._hotadd import ARGUMENT_SPEC


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.fail_json(msg="node_plugin_hotadd runs on the controller as an action plugin; this module file holds its "
                         "documentation only. Call it as a task (ovirt.node_plugins.node_plugin_hotadd).")


if __name__ == "__main__":
    main()
