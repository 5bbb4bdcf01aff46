"""deploy/ checked offline: Kubernetes manifests against the Kubernetes schemas (kubernetes-validate), and the
Dockerfile and compose file statically, since no container engine runs here. Every place that starts a
kindstride process runs the command tests/test_topology.py runs."""

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from kindstride.config import ENV_VARIABLES
from kindstride.jobs.queue import QUEUES
from tests.test_topology import COMPOSE_FILE, PROCESSES, process_commands

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
K8S = DEPLOY / "k8s"
# The oldest Kubernetes these manifests support, and the newest whose schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", "latest")
KEDA_API = "keda.sh/v1alpha1"


def _manifests():
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((path.name, document))
    return documents


def _by_kind(kind):
    return {doc["metadata"]["name"]: doc for _file, doc in _manifests() if doc["kind"] == kind}


def _containers(workload):
    spec = workload["spec"]["template"]["spec"]
    return spec["containers"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_validate_against_the_schemas(version):
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    version = latest_version() if version == "latest" else version
    checked = 0
    for name, document in _manifests():
        if document["apiVersion"] == KEDA_API:
            continue  # a custom resource: checked by the KEDA test below
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {document['kind']} {document['metadata']['name']}: {error.message} "
                        f"at {'.'.join(str(p) for p in error.path)}")
        checked += 1
    assert checked >= 8


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_kubernetes_runs_the_topology_commands_and_the_shapes_the_issue_asks_for():
    commands = process_commands()
    deployments, jobs = _by_kind("Deployment"), _by_kind("Job")
    ran = {
        "web": _containers(deployments["kindstride-web"])[0]["command"],
        "worker": _containers(deployments["kindstride-worker"])[0]["command"],
        "cron": _containers(deployments["kindstride-cron"])[0]["command"],
        "migrate": _containers(jobs["kindstride-migrate"])[0]["command"],
    }
    assert ran == commands

    cron = deployments["kindstride-cron"]["spec"]
    assert cron["replicas"] == 1 and cron["strategy"]["type"] == "Recreate"
    hpa = _by_kind("HorizontalPodAutoscaler")["kindstride-web"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "kindstride-web"}
    assert hpa["minReplicas"] >= 2
    web = _containers(deployments["kindstride-web"])[0]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    service = _by_kind("Service")["kindstride-web"]["spec"]
    assert service["selector"] == deployments["kindstride-web"]["spec"]["selector"]["matchLabels"]


def test_workers_scale_on_every_queue_with_keda():
    scaled = _by_kind("ScaledObject")["kindstride-worker"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "kindstride-worker"
    from rq import Queue

    lists = {trigger["metadata"]["listName"] for trigger in scaled["triggers"] if trigger["type"] == "redis"}
    assert lists == {Queue.redis_queue_namespace_prefix + name for name in QUEUES}
    authentications = _by_kind("TriggerAuthentication")
    assert {trigger["authenticationRef"]["name"] for trigger in scaled["triggers"]} <= set(authentications)


def test_configuration_comes_from_the_config_map_and_the_secret():
    config_maps = _by_kind("ConfigMap")
    assert set(config_maps["kindstride-config"]["data"]) <= set(ENV_VARIABLES)
    for name, document in _manifests():
        if document["kind"] not in ("Deployment", "Job"):
            continue
        for container in _containers(document):
            assert container["envFrom"] == [{"configMapRef": {"name": "kindstride-config"}}], name
            for variable in container.get("env", []):
                assert variable["name"] in ENV_VARIABLES, f"{name}: {variable['name']} is no configuration variable"
                reference = variable["valueFrom"]["secretKeyRef"]
                assert reference["name"] == "kindstride-secrets" and reference["key"] == variable["name"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert document["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    migrate = _containers(_by_kind("Job")["kindstride-migrate"])[0]
    assert "KINDSTRIDE_MIGRATE_DATABASE_URL" in {v["name"] for v in migrate["env"]}


def test_ingress_serves_the_wildcard_the_base_domain_and_custom_domains():
    ingress = _by_kind("Ingress")["kindstride"]["spec"]
    base = _by_kind("ConfigMap")["kindstride-config"]["data"]["KINDSTRIDE_BASE_DOMAIN"]
    hosts = [rule.get("host") for rule in ingress["rules"]]
    assert f"*.{base}" in hosts and base in hosts and None in hosts  # None: any host, i.e. custom domains
    for rule in ingress["rules"]:
        backend = rule["http"]["paths"][0]["backend"]["service"]
        assert backend["name"] == "kindstride-web"


# -- compose and Dockerfile -------------------------------------------------------------------------------

def _compose():
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_compose_runs_web_worker_cron_migrate_postgres_and_redis():
    services = _compose()["services"]
    assert set(services) == {*PROCESSES, "postgres", "redis"}
    assert process_commands() == {
        "migrate": ["kindstride", "db", "upgrade"],
        "web": ["kindstride", "web"],
        "worker": ["kindstride", "worker", "--queue", "high", "--queue", "default", "--queue", "low"],
        "cron": ["kindstride", "cron"],
    }
    for name in PROCESSES:
        service = services[name]
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert set(service["environment"]) <= set(ENV_VARIABLES), name
    assert services["migrate"]["environment"]["KINDSTRIDE_MIGRATE_DATABASE_URL"].startswith("postgresql")
    assert "kindstride_app" in services["web"]["environment"]["KINDSTRIDE_DATABASE_URL"]  # never the owner
    for name in ("web", "worker", "cron"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert (DEPLOY / "postgres" / "init-app-role.sh").exists()


def _dockerfile_instructions():
    text = (DEPLOY / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_is_multi_stage_non_root_and_runs_kindstride_web():
    instructions = _dockerfile_instructions()
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(stages) >= 2 and all(stage.startswith("python:3.11-slim") for stage in stages)
    final = instructions[max(i for i, (keyword, _r) in enumerate(instructions) if keyword == "FROM"):]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(keyword == "COPY" and rest.startswith("--from=") for keyword, rest in final)  # built, then copied
    cmd = [rest for keyword, rest in instructions if keyword == "CMD"][-1]
    assert json.loads(cmd) == process_commands()["web"]
    copied = " ".join(rest for keyword, rest in instructions if keyword == "COPY")
    for needed in ("migrations", "tenants", "deploy/gunicorn.conf.py", "platform", "rules_plugins"):
        assert needed in copied, f"the image lacks {needed}"
    assert not any(keyword == "ADD" for keyword, _rest in instructions)
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert "pip install" in runs and shlex.split(runs)
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert {".git", ".venv", "instance", "deploy/.env"} <= set(ignored)  # never sent to the builder


def test_nginx_site_retries_on_the_next_instance():
    site = (DEPLOY / "nginx" / "kindstride.conf").read_text()
    assert "proxy_next_upstream error timeout;" in site
    assert "proxy_set_header Host $host;" in site and "X-Request-ID" in site
    assert site.count("@UPSTREAM_SERVERS@") == 1 and site.count("@LISTEN@") == 1
