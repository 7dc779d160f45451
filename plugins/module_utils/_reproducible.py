# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SOURCE_DATE_EPOCH, read in one place: the time every reproducible output carries."""

from __future__ import annotations

import datetime
import os

from ._errors import NodePluginError


def source_date_epoch() -> int | None:
    """SOURCE_DATE_EPOCH as an integer, None when unset; a value that is not a number is refused."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    if not value.isdigit() or len(value) > 12:
        raise NodePluginError(f"SOURCE_DATE_EPOCH={value[:40]!r} is not a number of seconds since 1970",
                              hint="set it to an integer such as the date of the last commit, or unset it")
    return int(value)


def utc_timestamp() -> str:
    """RFC 3339 UTC time (seconds) of SOURCE_DATE_EPOCH when set, else of now."""
    epoch = source_date_epoch()
    moment = datetime.datetime.now(datetime.timezone.utc) if epoch is None else \
        datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
