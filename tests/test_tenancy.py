import pytest
import sqlalchemy as sa

from kindstride.accounts.models import User
from kindstride.db import db, tenant_tables
from kindstride.tenancy import services
from kindstride.tenancy.scope import TenantScopeError, tenant_scope


def test_host_header_picks_the_tenant_and_its_language(app, tenants):
    client = app.test_client()
    alpha = client.on("alpha").get("/")
    beta = client.on("beta").get("/")
    assert alpha.status_code == beta.status_code == 200
    assert "Alpha Corp" in alpha.get_data(as_text=True)
    assert '<html lang="en">' in alpha.get_data(as_text=True)
    assert "Công ty Beta" in beta.get_data(as_text=True)
    assert '<html lang="vi">' in beta.get_data(as_text=True)
    assert "Đăng nhập" in beta.get_data(as_text=True)


def test_custom_domain_routes_to_its_tenant(app, tenants):
    tenant = services.get_tenant("alpha")
    services._set_domains(tenant, ["run.alpha.example"])
    db.session.commit()
    page = app.test_client().on("run.alpha.example").get("/")
    assert page.status_code == 200 and "Alpha Corp" in page.get_data(as_text=True)


def test_unknown_host_gets_a_404_page(app, tenants):
    page = app.test_client().on("nobody").get("/")
    assert page.status_code == 404
    assert "There is no site at nobody.kindstride.test" in page.get_data(as_text=True)
    assert app.test_client().on("evil.example").get("/").status_code == 404


def test_suspended_tenant_gets_a_503_page_and_comes_back(app, tenants):
    services.set_status("alpha", "suspended")
    page = app.test_client().on("alpha").get("/")
    assert page.status_code == 503 and "temporarily unavailable" in page.get_data(as_text=True)
    services.set_status("alpha", "active")
    assert app.test_client().on("alpha").get("/").status_code == 200


def test_query_on_tenant_data_without_a_scope_raises(app, tenants):
    with pytest.raises(TenantScopeError, match="outside a tenant scope"):
        db.session.scalars(sa.select(User)).all()


def test_orm_filters_every_query_by_the_scope(app, tenants, make_user):
    make_user(tenants["alpha"], "ann@alpha.example")
    make_user(tenants["beta"], "binh@beta.example")
    with tenant_scope(tenants["alpha"]):
        assert [u.email for u in db.session.scalars(sa.select(User))] == ["ann@alpha.example"]
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


def test_aggregates_over_tenant_tables_are_filtered_and_need_a_scope(app, tenants, make_user):
    make_user(tenants["alpha"], "ann@alpha.example")
    make_user(tenants["beta"], "binh@beta.example")
    make_user(tenants["beta"], "chi@beta.example")
    count = sa.select(sa.func.count()).select_from(User)
    for slug, expected in (("alpha", 1), ("beta", 2), ("alpha", 1)):
        with tenant_scope(tenants[slug]):
            assert db.session.scalar(count) == expected
            assert db.session.scalar(sa.select(sa.func.count(User.id))) == expected
    with pytest.raises(TenantScopeError, match="users"):
        db.session.scalar(count)


def test_writing_a_row_of_another_tenant_raises(app, tenants):
    with tenant_scope(tenants["alpha"]):
        db.session.add(User(tenant_id=tenants["beta"], email="x@y.example", name="X"))
        with pytest.raises(TenantScopeError, match="written in the scope of tenant"):
            db.session.flush()
    db.session.rollback()


def test_same_email_on_two_tenants_is_two_accounts(app, tenants, make_user):
    first = make_user(tenants["alpha"], "same@example.com")
    second = make_user(tenants["beta"], "same@example.com")
    assert first != second


def test_every_tenant_table_has_a_tenant_id_and_composite_references():
    for name in tenant_tables():
        table = db.metadata.tables[name]
        assert not table.c.tenant_id.nullable
        for fk in table.foreign_key_constraints:
            if fk.referred_table.name in tenant_tables():
                assert "tenant_id" in fk.column_keys, f"{name}: {fk.column_keys} can point into another tenant"


def test_sync_provisions_the_demo_tenants(app):
    report = services.sync_tenants(app.config["TENANTS_DIR"])
    assert len(report) >= 4 and all(line.startswith("created") for line in report)
    again = services.sync_tenants(app.config["TENANTS_DIR"])
    assert all(line.startswith("updated") for line in again)
    locales = {t.locale for t in db.session.scalars(sa.select(services.Tenant))}
    assert locales == {"en", "vi"}


def test_sync_refuses_a_bad_file_naming_the_field_and_writes_nothing(app, tmp_path):
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "tenant.toml").write_text('slug = "good"\nname = "Good"\n')
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tenant.toml").write_text('slug = "bad"\nname = "Bad"\ncurrency = "XYZ"\n')
    with pytest.raises(services.TenantConfigError, match=r"bad/tenant.toml: currency: unknown ISO 4217"):
        services.sync_tenants(tmp_path)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(services.Tenant)) == 0


def test_tenants_cli_create_list_suspend_activate(app):
    runner = app.test_cli_runner()
    created = runner.invoke(args=["tenants", "create", "gamma", "--name", "Gamma Club", "--currency", "eur"])
    assert created.exit_code == 0, created.output
    assert "gamma" in runner.invoke(args=["tenants", "list"]).output
    assert runner.invoke(args=["tenants", "suspend", "gamma"]).exit_code == 0
    assert "suspended" in runner.invoke(args=["tenants", "list"]).output
    assert runner.invoke(args=["tenants", "activate", "gamma"]).exit_code == 0
    missing = runner.invoke(args=["tenants", "suspend", "nope"])
    assert missing.exit_code != 0 and "no tenant 'nope'" in missing.output
    duplicate = runner.invoke(args=["tenants", "create", "gamma", "--name", "Again"])
    assert duplicate.exit_code != 0 and "already exists" in duplicate.output
    bad = runner.invoke(args=["tenants", "create", "Bad_Slug!", "--name", "X"])
    assert bad.exit_code != 0 and "slug:" in bad.output
