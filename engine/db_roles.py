"""Create the ledger's database roles on a server: ``python -m engine.db_roles``.

Compose runs it as the one-shot ``db-roles`` service before ``tradectl migrate``, on every
``up``: unlike a ``docker-entrypoint-initdb.d`` script (run only when the volume is empty) it
also provisions a volume from before the roles, hands its tables over to the owner, and applies
a changed password. It connects with ``TRADECTL_ADMIN_DATABASE_URL`` (a superuser, or a role with
CREATEROLE that may reassign the tables), names the roles as the engine does
(``TRADECTL_OWNER_ROLE``, ``TRADECTL_ENGINE_ROLE``, ``TRADECTL_READONLY_ROLE``) and sets the
passwords given in ``TRADECTL_OWNER_PASSWORD``, ``TRADECTL_ENGINE_PASSWORD`` and
``TRADECTL_READONLY_PASSWORD`` (a role without one keeps its password, or has none).
"""

from __future__ import annotations

import asyncio
import os
import sys

from engine.config import load_settings
from engine.exceptions import TradectlError
from engine.ledger.db import normalize_url, redacted
from engine.ledger.roles import provision_roles


def main() -> int:
    admin = os.environ.get("TRADECTL_ADMIN_DATABASE_URL")
    if not admin:
        print(
            "error: set TRADECTL_ADMIN_DATABASE_URL to a superuser's postgresql:// URL",
            file=sys.stderr,
        )
        return 2
    try:
        settings = load_settings()
        roles = settings.roles
        passwords = {
            role: os.environ.get(f"TRADECTL_{kind}_PASSWORD", "")
            for kind, role in (("OWNER", roles.owner), ("ENGINE", roles.engine),
                               ("READONLY", roles.readonly))
        }  # fmt: skip
        url = normalize_url(admin)
        asyncio.run(provision_roles(url, roles, {r: p for r, p in passwords.items() if p}))
    except TradectlError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(
        f"roles {roles.owner} (owner), {roles.engine} (engine), {roles.readonly} (read-only) "
        f"ready on {redacted(url)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
