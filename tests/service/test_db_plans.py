"""PostgreSQL plans each repeated statement for its own parameters (see :func:`server.db.make_engine`)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from hl7.inbound import Identifier
from server.services import Services

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_look_up_repeated_many_times_is_still_planned_for_its_own_keys(services: Services) -> None:
    """The driver prepares a statement after a few runs; the server must not settle on one generic plan,
    which after a backlog arrives scans whole tables."""
    with services.uow.begin() as session:
        for n in range(12):
            services.patients.prefetch(session, [Identifier(f"MRN{n}-{k}", "MAINCLINIC") for k in range(n + 1)],
                                       [], reserve=False)
        plans = session.execute(text("SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0) "
                                     "FROM pg_prepared_statements")).one()
    assert plans[0] == 0 and plans[1] > 0
