"""The e-mail winners in the state store (table `email_winners`): which user holds each e-mail,
so that dedup decides the same way from run to run. Part of engine.state.StateStore."""
from __future__ import annotations

from typing import Mapping

import sqlalchemy as sa

from engine.state_rows import _CHUNK


class EmailWinners:
    """The e-mail winners' reads and writes (engine.state.StateStore)."""

    def winners(self, tenant: str) -> dict[str, str]:
        if self._winners.name in self._missing:
            return {}
        w = self._winners.c
        with self._failing(tenant, "read the e-mail winners from"), self.engine.connect() as c:
            return dict(c.execute(sa.select(w.email, w.external_id).where(w.tenant == tenant)).all())

    def replace_winners(self, tenant: str, winners: Mapping[str, str]) -> None:
        rows = [{"tenant": tenant, "email": e, "external_id": i} for e, i in winners.items()]
        with self._failing(tenant, "record the e-mail winners in"), self.engine.begin() as c:
            c.execute(self._winners.delete().where(self._winners.c.tenant == tenant))
            for start in range(0, len(rows), _CHUNK):
                c.execute(self._winners.insert(), rows[start:start + _CHUNK])
