"""schemathesis against the served OpenAPI document: generated requests to every operation, as an
authenticated admin of one tenant over real HTTP, never get a 5xx and always match the schema."""

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from werkzeug.serving import make_server

from kindstride.accounts import services as accounts
from kindstride.accounts.models import User
from kindstride.challenges.services import create_challenge, create_team, divisions_of, register
from kindstride.db import db
from kindstride.tenancy.scope import tenant_scope

NOW = datetime.now(UTC).replace(microsecond=0)
EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def fuzz_site(app, tenants, make_user):
    admin_id = make_user(tenants["alpha"], "admin@alpha.example", roles=("participant", "admin", "moderator"))
    with tenant_scope(tenants["alpha"]):
        admin = db.session.get(User, admin_id)
        _record, token = accounts.create_api_token(admin, "fuzz", list(accounts.API_SCOPES), 30)
        challenge = create_challenge({
            "slug": "fuzz", "title": "Fuzz", "sports": ["run"],
            "registration_opens_at": (NOW - timedelta(days=1)).isoformat(),
            "registration_closes_at": (NOW + timedelta(days=9)).isoformat(),
            "counting_start": (NOW - timedelta(days=1)).isoformat(),
            "counting_end": (NOW + timedelta(days=9)).isoformat(), "divisions": ["A"],
            "preset": "vn-charity-run-2024"}, created_by=admin)
        create_team(challenge, "Fuzzers", divisions_of(challenge)[0].id)
        register(challenge, admin, {})
        db.session.commit()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    headers = {"Host": "alpha.kindstride.test", "Authorization": f"Bearer {token}"}
    yield {"base_url": f"http://127.0.0.1:{server.server_port}", "headers": headers}
    server.shutdown()
    thread.join()


@pytest.fixture
def api_schema(fuzz_site):
    spec = requests.get(f"{fuzz_site['base_url']}/api/v1/openapi.json", headers=fuzz_site["headers"], timeout=10)
    spec.raise_for_status()
    return schemathesis.openapi.from_dict(spec.json())


def test_no_server_errors_and_responses_match_the_schema(fuzz_site, api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    # Revoking its own token would leave the rest of the run unauthenticated: tested in test_api.py.
    operations = [op for op in operations if (op.method.upper(), op.path) != ("DELETE", "/api/v1/tokens/{token_id}")]
    statuses = Counter()
    for operation in operations:

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case):
            response = case.call_and_validate(base_url=fuzz_site["base_url"], headers=fuzz_site["headers"],
                                              checks=[not_a_server_error, response_schema_conformance])
            statuses[response.status_code // 100] += 1

        call()
    # The run reached the endpoints (not only 401s): successes and refusals of bad input both occur.
    assert statuses[2] > len(operations) and statuses[4] > 0, statuses
