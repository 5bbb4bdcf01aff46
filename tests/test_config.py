import pytest

from kindstride.config import ConfigError, load_config


def test_production_refuses_to_start_without_secret_key_naming_the_variable(tmp_path):
    environ = {"KINDSTRIDE_ENV": "production", "KINDSTRIDE_DATABASE_URL": "postgresql://x/y",
               "KINDSTRIDE_SECRETS_KEY": "k", "KINDSTRIDE_INSTANCE_PATH": str(tmp_path)}
    with pytest.raises(ConfigError, match="KINDSTRIDE_SECRET_KEY"):
        load_config(environ)


def test_production_refuses_to_start_without_database_url(tmp_path):
    environ = {"KINDSTRIDE_ENV": "production", "KINDSTRIDE_SECRET_KEY": "s", "KINDSTRIDE_SECRETS_KEY": "k",
               "KINDSTRIDE_INSTANCE_PATH": str(tmp_path)}
    with pytest.raises(ConfigError, match="KINDSTRIDE_DATABASE_URL"):
        load_config(environ)


def test_demo_defaults_keep_a_generated_secret_in_the_instance_folder(tmp_path):
    first = load_config({"KINDSTRIDE_INSTANCE_PATH": str(tmp_path)})
    second = load_config({"KINDSTRIDE_INSTANCE_PATH": str(tmp_path)})
    assert first["SECRET_KEY"] == second["SECRET_KEY"] and len(first["SECRET_KEY"]) > 40
    assert first["DATABASE_URL"] == f"sqlite:///{tmp_path / 'kindstride.sqlite'}"
    assert first["REDIS_URL"] is None
