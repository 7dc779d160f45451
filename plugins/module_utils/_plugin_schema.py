# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""JSON Schema of a plugin's manifest.json (format 1).

docs/plugin-manifest.schema.json is generated from this dict (a unit test keeps them equal):
``python -m ansible_collections.ovirt.node_plugins.plugins.module_utils._plugin_schema > docs/plugin-manifest.schema.json``
"""

from __future__ import annotations

import json
import sys

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
_VERSION = r"^[A-Za-z0-9][A-Za-z0-9._+~^]*$"
_SHA256 = r"^[0-9a-f]{64}$"
_ABSOLUTE_PATH = r"^(?!.*/\.\.?(/|$))/[^\x00]*$"

SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://github.com/ovirt/ovirt-node-plugins/blob/main/docs/plugin-manifest.schema.json",
    "title": "oVirt Node plugin manifest, format 1",
    "type": "object",
    "additionalProperties": False,
    "required": ["format", "name", "version", "vendor", "summary", "kind", "node", "packages", "recipe",
                 "persist", "allowed_path_overrides", "created"],
    "properties": {
        "format": {"const": 1, "description": "Version of the plugin format."},
        "name": {"type": "string", "pattern": _NAME, "maxLength": 128, "description": "Plugin name."},
        "version": {"type": "string", "pattern": _VERSION, "maxLength": 64,
                    "description": "Plugin version, compared the way rpm compares versions."},
        "vendor": {"type": "string", "maxLength": 256},
        "summary": {"type": "string", "maxLength": 1024},
        "kind": {"enum": ["standard", "kmod"],
                 "description": "kmod plugins may also install under the kernel-module paths."},
        "node": {
            "type": "object",
            "additionalProperties": False,
            "required": ["product", "versions"],
            "properties": {
                "product": {"type": "string", "maxLength": 256,
                            "description": "Node product (PRODUCT_SHORT of isolinux/version); empty: any."},
                "versions": {"type": "string", "maxLength": 256,
                             "description": "Range of compatible Node versions, e.g. '>=2.5.0, <2.6'."},
            },
        },
        "packages": {
            "type": "array",
            "minItems": 1,
            "maxItems": 4096,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["file", "name", "nevra", "size", "sha256", "role", "signed", "key_id"],
                "properties": {
                    "file": {"type": "string", "pattern": r"^rpms/[A-Za-z0-9][A-Za-z0-9._+~^-]*\.rpm$"},
                    "name": {"type": "string", "pattern": _NAME},
                    "nevra": {"type": "string", "minLength": 1, "maxLength": 512},
                    "size": {"type": "integer", "minimum": 0},
                    "sha256": {"type": "string", "pattern": _SHA256},
                    "role": {"enum": ["plugin", "dependency"]},
                    "signed": {"type": "boolean"},
                    "key_id": {"type": ["string", "null"], "pattern": r"^[0-9a-f]{8,40}$"},
                },
            },
        },
        "recipe": {
            "type": "object",
            "additionalProperties": False,
            "required": ["file", "sha256"],
            "properties": {
                "file": {"const": "recipe.ks"},
                "sha256": {"type": "string", "pattern": _SHA256},
            },
        },
        "persist": {"type": "array", "maxItems": 256, "uniqueItems": True,
                    "items": {"type": "string", "pattern": _ABSOLUTE_PATH, "maxLength": 4096},
                    "description": "Absolute paths to persist on stateful installs."},
        "allowed_path_overrides": {"type": "array", "maxItems": 256, "uniqueItems": True,
                                   "items": {"type": "string", "pattern": _ABSOLUTE_PATH, "maxLength": 4096},
                                   "description": "Paths allowed beyond the standard set, declared by the vendor."},
        "created": {"type": "string", "format": "date-time",
                    "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$",
                    "description": "RFC 3339 UTC time, seconds precision (YYYY-MM-DDTHH:MM:SSZ)."},
    },
}


def schema_json() -> str:
    """The schema as the text of docs/plugin-manifest.schema.json."""
    return json.dumps(SCHEMA, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(schema_json())
