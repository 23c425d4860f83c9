#!/usr/bin/env python3
"""Checks that the deployment files fit the server they deploy.

Usage: deploy_check.py SESSIONLOG_BINARY DOCKERFILE RENDERED.yaml...

For each rendered overlay, and for the Dockerfile, the real server is
started with the settings the files give it (its SESSIONLOG_* variables,
with every path moved under a temporary root and every TCP port made
ephemeral on loopback). Then:

- each gRPC probe's service name must be SERVING on the listener its port
  names, and that listener must not be loopback (the kubelet dials the pod
  IP); a made-up name must not be SERVING, so the check can fail;
- each `sessionlog health` command (exec probes, HEALTHCHECK) must exit 0
  against the address it names, and an app container's SESSIONLOG_SERVER
  socket must be the sidecar's, on the same volume;
- terminationGracePeriodSeconds must exceed SESSIONLOG_SHUTDOWN_GRACE by a
  margin for the final flush (the Dockerfile's grace must fit Docker's
  default stop timeout);
- the data dir and sockets must be on writable volumes (the root filesystem
  is read-only), the data dir below the mount point (lost+found);
- the Prometheus annotations must name the metrics listener, which must
  answer on that path; a token file must come from a rendered Secret and
  the server must then refuse calls without a token.

- a pod that runs as root must be a node log reader: every hostPath it
  mounts is under /var/log and read-only, and it drops every capability;
- an OpenTelemetry Collector (a container started with --config=) must post
  to a rendered Service port that reaches the server's
  SESSIONLOG_HTTP_LISTEN, tail a read-only hostPath, and have every
  ${env:…} its config names; then the real Collector ($OTELCOL_BINARY) runs
  that config (its paths moved to the sandbox, its endpoint to the real
  server started as the overlay configures it) and lines written in the
  /var/log/pods layout must arrive, one session per container.

Needs PyYAML and grpcio. Prints one line per check; exits 1 on the first
overlay with failures, after listing them.
"""

import base64
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

import grpc
import yaml

# What SIGKILL must leave after the drain: sled's final flush and the exit.
FLUSH_MARGIN_SECONDS = 5
DOCKER_STOP_TIMEOUT_SECONDS = 10
DEFAULTS = {
    "SESSIONLOG_LISTEN": "127.0.0.1:50051",
    "SESSIONLOG_SHUTDOWN_GRACE": "10s",
    "SESSIONLOG_DATA_DIR": "./sessionlog-data",
}
DEFAULT_SERVER = "http://127.0.0.1:50051"
UNKNOWN_SERVICE = "nope"
SERVING = 1
STARTUP_TIMEOUT_SECONDS = 60
CALL_TIMEOUT_SECONDS = 10


class CheckFailed(Exception):
    pass


class Report:
    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failures = []

    def ok(self, what):
        self.passed += 1
        print(f"deploy_check: {self.name}: ok: {what}")

    def fail(self, what):
        self.failures.append(what)
        print(f"deploy_check: {self.name}: FAILED: {what}", file=sys.stderr)

    def expect(self, condition, what, why=""):
        if condition:
            self.ok(what)
        else:
            self.fail(f"{what}{': ' + why if why else ''}")
        return condition


def parse_duration_seconds(text):
    """The forms the manifests use: 500ms, 10s, 10m, 2h, 7d."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text.strip())
    if not match:
        raise CheckFailed(f"`{text}` is not a duration this check understands")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return int(match.group(1)) * scale


def split_host_port(address):
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def is_loopback(host):
    return host in ("localhost", "::1") or host.startswith("127.")


# --- the gRPC health service, as the kubelet's probe calls it -------------


def encode_varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def health_status(target, service):
    """grpc.health.v1.Health/Check for `service`: (status number, None), or
    (None, the gRPC error code) when the call fails."""
    name = service.encode()
    request = b"\x0a" + encode_varint(len(name)) + name if name else b""
    with grpc.insecure_channel(target) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        try:
            response = check(request, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.RpcError as err:
            return None, err.code().name
    # HealthCheckResponse has one field, `status` (1, varint); absent is 0.
    if not response:
        return 0, None
    if response[0] != 0x08:
        raise CheckFailed(f"unexpected health response bytes {response!r}")
    status, shift = 0, 0
    for byte in response[1:]:
        status |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return status, None


def unauthenticated_without_token(target):
    with grpc.insecure_channel(target) as channel:
        list_sessions = channel.unary_unary("/sessionlog.v1.SessionLog/ListSessions")
        try:
            list_sessions(b"", timeout=CALL_TIMEOUT_SECONDS)
        except grpc.RpcError as err:
            return err.code() == grpc.StatusCode.UNAUTHENTICATED
    return False


# --- the real server, configured as a manifest configures it --------------


class Sandbox:
    """A temporary root standing in for the container's filesystem."""

    def __init__(self, base):
        self.root = Path(base) / "root"
        self.root.mkdir()

    def path(self, container_path):
        return self.root / PurePosixPath(container_path).relative_to("/")


class Server:
    def __init__(self, binary, env, sandbox):
        self.binary = binary
        self.sandbox = sandbox
        self.listeners = split_list(env.get("SESSIONLOG_LISTEN", DEFAULTS["SESSIONLOG_LISTEN"]))
        self.has_metrics = "SESSIONLOG_METRICS_LISTEN" in env
        self.has_http = "SESSIONLOG_HTTP_LISTEN" in env
        self.grace_seconds = parse_duration_seconds(
            env.get("SESSIONLOG_SHUTDOWN_GRACE", DEFAULTS["SESSIONLOG_SHUTDOWN_GRACE"])
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONLOG_")}
        for key, value in env.items():
            self.env[key] = sandbox.path(value) if value.startswith("/") else value
        self.env["SESSIONLOG_LISTEN"] = ",".join(self.local_listener(a) for a in self.listeners)
        if self.has_metrics:
            self.env["SESSIONLOG_METRICS_LISTEN"] = "127.0.0.1:0"
        if self.has_http:
            self.env["SESSIONLOG_HTTP_LISTEN"] = "127.0.0.1:0"
        self.env["SESSIONLOG_LOG_FORMAT"] = "json"
        self.env["RUST_LOG"] = "info"
        self.env = {k: str(v) for k, v in self.env.items()}
        # Listener (as configured) -> the address it really got here.
        self.bound = {}
        self.metrics_address = None
        self.http_address = None
        self.log = []
        self.process = None

    def local_listener(self, address):
        if address.startswith("unix:"):
            return f"unix:{self.sandbox.path(address[5:])}"
        return "127.0.0.1:0"

    def __enter__(self):
        self.process = subprocess.Popen(
            [self.binary, "serve"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines = queue.Queue()

        def drain():
            for line in self.process.stderr:
                self.log.append(line.rstrip("\n"))
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        serving = []
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while (len(serving) < len(self.listeners) or (self.has_metrics and not self.metrics_address)
               or (self.has_http and not self.http_address)):
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.stop()
                raise CheckFailed("the server did not start:\n" + "\n".join(self.log[-20:]))
            try:
                fields = json.loads(line).get("fields", {})
            except json.JSONDecodeError:
                continue
            if fields.get("message") == "serving":
                serving.append(fields["listen"])
            elif fields.get("message") == "serving metrics":
                self.metrics_address = fields["listen"]
            elif fields.get("message") == "serving http":
                self.http_address = fields["listen"]
        # The server logs its listeners in the order they were given.
        self.bound = dict(zip(self.listeners, serving))
        return self

    def tcp_target(self, port):
        """The local address of the configured TCP listener on `port`."""
        for configured, local in self.bound.items():
            if not configured.startswith("unix:") and split_host_port(configured)[1] == port:
                return local
        return None

    def client_address(self, server):
        """Where a client given `--server server` in the container connects here."""
        if server.startswith("unix:"):
            if server in self.bound:
                return f"unix:{self.sandbox.path(server[5:])}"
            return None
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/?", server)
        if not match:
            return None
        local = self.tcp_target(int(match.group(1)))
        return f"http://{local}" if local else None

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=self.grace_seconds + FLUSH_MARGIN_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.stop()


def split_list(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def run_health(report, server, command, default_server, what):
    """Runs a `sessionlog health ...` command line against the local server."""
    if command[:2] != ["sessionlog", "health"]:
        report.fail(f"{what}: `{shlex.join(command)}` is not `sessionlog health`")
        return
    # Every argument but the server address is kept as written.
    args, target, rest = [], default_server, iter(command[2:])
    for arg in rest:
        if arg == "--server":
            target = next(rest, "")
        elif arg.startswith("--server="):
            target = arg.split("=", 1)[1]
        else:
            args.append(arg)
    local = server.client_address(target)
    if not report.expect(local is not None, f"{what}: `{target}` is one of the server's listeners",
                         f"it listens on {', '.join(server.listeners)}"):
        return
    args += ["--server", local]
    result = subprocess.run([server.binary, "health", *args], capture_output=True, text=True,
                            timeout=CALL_TIMEOUT_SECONDS * 2, env=server.env)
    report.expect(result.returncode == 0, f"{what}: `{shlex.join(command)}` exits 0",
                  f"exit {result.returncode}: {result.stdout.strip()} {result.stderr.strip()}")


def check_grpc_service(report, server, port, service, what):
    target = server.tcp_target(port)
    if not report.expect(target is not None, f"{what}: port {port} is a TCP listener",
                         f"it listens on {', '.join(server.listeners)}"):
        return
    configured = next(a for a, local in server.bound.items() if local == target)
    report.expect(not is_loopback(split_host_port(configured)[0]),
                  f"{what}: {configured} is reachable on the pod IP",
                  "the kubelet's gRPC probe dials the pod IP, not loopback")
    status, code = health_status(target, service)
    report.expect(status == SERVING, f"{what}: service {service!r} is SERVING",
                  f"status {status}, error {code}")
    status, code = health_status(target, UNKNOWN_SERVICE)
    report.expect(status != SERVING, f"{what}: service {UNKNOWN_SERVICE!r} is not SERVING",
                  "the check could not tell a wrong name")


# --- Kubernetes -------------------------------------------------------------


def pod_templates(docs):
    for doc in docs:
        if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield doc, doc["spec"]["template"], doc["spec"].get("volumeClaimTemplates", [])


def is_server(container):
    command, args = container.get("command", []), container.get("args", [])
    return (not command and args[:1] == ["serve"]) or command[:2] == ["sessionlog", "serve"]


def container_env(container, configmaps, report):
    env = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref is None:
            report.fail(f"{container['name']}: envFrom other than a ConfigMap is not checked")
            continue
        if report.expect(ref["name"] in configmaps, f"{container['name']}: ConfigMap {ref['name']} is rendered"):
            env.update(configmaps[ref["name"]].get("data", {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "configMapKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = configmaps.get(ref["name"], {}).get("data", {}).get(ref["key"], "")
    return env


def mount_of(container, path):
    """The volume mount holding `path`, the deepest one."""
    best = None
    for mount in container.get("volumeMounts", []):
        mount_path = PurePosixPath(mount["mountPath"])
        if PurePosixPath(path) == mount_path or mount_path in PurePosixPath(path).parents:
            if best is None or len(mount_path.parts) > len(PurePosixPath(best["mountPath"]).parts):
                best = mount
    return best


def prepare_volumes(sandbox, container, volumes, claims, secrets, report):
    """Lays the container's volumes out under the sandbox: empty dirs, claims
    with a lost+found like a fresh filesystem, and Secrets' files."""
    by_name = {v["name"]: v for v in volumes}
    claim_names = {c["metadata"]["name"] for c in claims}
    for mount in container.get("volumeMounts", []):
        target = sandbox.path(mount["mountPath"])
        target.mkdir(parents=True, exist_ok=True)
        volume = by_name.get(mount["name"], {})
        if mount["name"] in claim_names or "persistentVolumeClaim" in volume:
            (target / "lost+found").mkdir(exist_ok=True)
        elif "secret" in volume:
            name = volume["secret"]["secretName"]
            if not report.expect(name in secrets, f"Secret {name} is rendered"):
                continue
            secret = secrets[name]
            files = {k: base64.b64decode(v) for k, v in secret.get("data", {}).items()}
            files.update({k: v.encode() for k, v in secret.get("stringData", {}).items()})
            for key, content in files.items():
                (target / key).write_bytes(content)
        elif not ("emptyDir" in volume or mount["name"] in claim_names):
            report.fail(f"volume {mount['name']}: only emptyDir, claims and Secrets are checked")


def check_server_container(report, workload, template, claims, container, configmaps, secrets, binary):
    spec = template["spec"]
    name = f"{workload['kind']} {workload['metadata']['name']}, container {container['name']}"
    env = container_env(container, configmaps, report)
    grace = env.get("SESSIONLOG_SHUTDOWN_GRACE")
    report.expect(grace is not None, f"{name}: SESSIONLOG_SHUTDOWN_GRACE is set explicitly")
    grace_seconds = parse_duration_seconds(grace or DEFAULTS["SESSIONLOG_SHUTDOWN_GRACE"])
    period = spec.get("terminationGracePeriodSeconds", 30)
    report.expect(period >= grace_seconds + FLUSH_MARGIN_SECONDS,
                  f"{name}: terminationGracePeriodSeconds {period} > shutdown grace {grace} "
                  f"+ {FLUSH_MARGIN_SECONDS} s for the flush")

    security = container.get("securityContext", {})
    report.expect(security.get("readOnlyRootFilesystem") is True, f"{name}: read-only root filesystem")
    data_dir = env.get("SESSIONLOG_DATA_DIR", DEFAULTS["SESSIONLOG_DATA_DIR"])
    mount = mount_of(container, data_dir) if data_dir.startswith("/") else None
    if report.expect(mount is not None and not mount.get("readOnly"),
                     f"{name}: data dir {data_dir} is on a writable volume"):
        report.expect(PurePosixPath(data_dir) != PurePosixPath(mount["mountPath"]),
                      f"{name}: data dir is below the mount point {mount['mountPath']}",
                      "a fresh filesystem's lost+found would make the server refuse it")
    listeners = split_list(env.get("SESSIONLOG_LISTEN", DEFAULTS["SESSIONLOG_LISTEN"]))
    for listener in listeners:
        if listener.startswith("unix:"):
            mount = mount_of(container, str(PurePosixPath(listener[5:]).parent))
            report.expect(mount is not None and not mount.get("readOnly"),
                          f"{name}: socket {listener} is on a writable volume")

    is_sidecar = container in spec.get("initContainers", [])
    if is_sidecar:
        report.expect(container.get("restartPolicy") == "Always",
                      f"{name}: a native sidecar (restartPolicy: Always)")
        report.expect("startupProbe" in container, f"{name}: a startupProbe gates the app")
    for kind in ("livenessProbe", "readinessProbe"):
        report.expect("grpc" in container.get(kind, {}), f"{name}: {kind} is the kubelet's gRPC probe")

    sandbox = Sandbox(tempfile.mkdtemp(prefix="deploy-check-"))
    try:
        prepare_volumes(sandbox, container, spec.get("volumes", []), claims, secrets, report)
        with Server(binary, env, sandbox) as server:
            report.ok(f"{name}: the server starts with these settings ({', '.join(server.listeners)})")
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = container.get(kind)
                if probe is None:
                    continue
                what = f"{name}: {kind}"
                if "grpc" in probe:
                    check_grpc_service(report, server, probe["grpc"]["port"],
                                       probe["grpc"].get("service", ""), what)
                elif "exec" in probe:
                    run_health(report, server, probe["exec"]["command"],
                               env.get("SESSIONLOG_SERVER", DEFAULT_SERVER), what)
                else:
                    report.fail(f"{what}: only grpc and `sessionlog health` probes are checked")
            check_clients(report, server, spec, container, name)
            check_scrape(report, server, template, env, name)
            if "SESSIONLOG_AUTH_TOKEN_FILE" in env:
                check_tokens(report, server, container, spec, secrets, env, name)
            code = server.stop()
            report.expect(code == 0, f"{name}: the server exits 0 on SIGTERM within the grace",
                          f"exit {code}")
    except CheckFailed as err:
        report.fail(f"{name}: {err}")
    finally:
        shutil.rmtree(sandbox.root.parent, ignore_errors=True)


def check_clients(report, server, spec, server_container, name):
    """Other containers that name the server in SESSIONLOG_SERVER reach it."""
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        if container is server_container:
            continue
        address = next((e.get("value", "") for e in container.get("env", [])
                        if e["name"] == "SESSIONLOG_SERVER"), None)
        if address is None:
            continue
        what = f"{name}: container {container['name']}'s SESSIONLOG_SERVER {address}"
        if address.startswith("unix:"):
            socket_dir = str(PurePosixPath(address[5:]).parent)
            theirs, ours = mount_of(container, socket_dir), mount_of(server_container, socket_dir)
            report.expect(theirs is not None and ours is not None and theirs["name"] == ours["name"]
                          and theirs["mountPath"] == ours["mountPath"],
                          f"{what}: the socket's dir is the same volume in both containers")
        run_health(report, server, ["sessionlog", "health", "--server", address], address, what)


def check_scrape(report, server, template, env, name):
    annotations = template.get("metadata", {}).get("annotations", {})
    if annotations.get("prometheus.io/scrape") != "true":
        return
    metrics = env.get("SESSIONLOG_METRICS_LISTEN")
    if not report.expect(metrics is not None, f"{name}: prometheus.io/scrape with --metrics-listen set"):
        return
    host, port = split_host_port(metrics)
    report.expect(annotations.get("prometheus.io/port") == str(port),
                  f"{name}: prometheus.io/port is the metrics port {port}")
    report.expect(not is_loopback(host), f"{name}: metrics listener {metrics} is reachable on the pod IP")
    path = annotations.get("prometheus.io/path", "/metrics")
    with urllib.request.urlopen(f"http://{server.metrics_address}{path}", timeout=CALL_TIMEOUT_SECONDS) as response:
        body = response.read().decode()
    report.expect(response.status == 200 and "sessionlog_" in body,
                  f"{name}: GET {path} on the metrics listener returns the metrics")


def check_tokens(report, server, container, spec, secrets, env, name):
    path = env["SESSIONLOG_AUTH_TOKEN_FILE"]
    mount = mount_of(container, path)
    volume = next((v for v in spec.get("volumes", []) if mount and v["name"] == mount["name"]), {})
    report.expect("secret" in volume, f"{name}: the token file {path} comes from a Secret")
    target = next((local for configured, local in server.bound.items()
                   if not configured.startswith("unix:")), None)
    if target:
        report.expect(unauthenticated_without_token(target),
                      f"{name}: a call without a token is UNAUTHENTICATED (the token file is in use)")


def check_overlay(path, binary):
    report = Report(Path(path).stem)
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    servers = 0
    for workload, template, claims in pod_templates(docs):
        spec = template["spec"]
        security = spec.get("securityContext", {})
        what = f"{workload['kind']} {workload['metadata']['name']}"
        report.expect(security.get("seccompProfile", {}).get("type") == "RuntimeDefault",
                      f"{what}: the RuntimeDefault seccomp profile")
        if security.get("runAsUser", 0) == 0 and is_node_log_reader(spec):
            report.ok(f"{what}: runs as root only to read the nodes' log files "
                      "(hostPaths under /var/log, read-only; no capabilities)")
        else:
            report.expect(security.get("runAsNonRoot") is True and security.get("runAsUser", 0) != 0,
                          f"{what}: non-root")
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            context = container.get("securityContext", {})
            report.expect(context.get("allowPrivilegeEscalation") is False
                          and context.get("capabilities", {}).get("drop") == ["ALL"],
                          f"{what}, container {container['name']}: no privilege escalation, drops ALL")
            if is_server(container):
                servers += 1
                check_server_container(report, workload, template, claims, container,
                                       configmaps, secrets, binary)
            elif collector_config_path(container):
                check_collector(report, docs, workload, spec, container, configmaps, secrets, binary)
    report.expect(servers > 0, "the overlay runs a sessionlog server")
    return report


# --- an OpenTelemetry Collector in front of the server ----------------------

COLLECTOR_SECONDS = 60
ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def is_node_log_reader(spec):
    """Whether a pod only needs root to read the kubelet's log files: it
    mounts hostPaths, all under /var/log and read-only, and every container
    drops every capability and cannot escalate."""
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec.get("volumes", []) if "hostPath" in v}
    if not host_paths or not all(p == "/var/log" or p.startswith("/var/log/") for p in host_paths.values()):
        return False
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        context = container.get("securityContext", {})
        if context.get("capabilities", {}).get("drop") != ["ALL"] or context.get("capabilities", {}).get("add"):
            return False
        for mount in container.get("volumeMounts", []):
            if mount["name"] in host_paths and not mount.get("readOnly"):
                return False
    return True


def collector_config_path(container):
    for arg in container.get("command", []) + container.get("args", []):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def collector_config(spec, container, configmaps, report, name):
    """The Collector's config: the ConfigMap key its --config file is."""
    path = PurePosixPath(collector_config_path(container))
    mount = mount_of(container, str(path))
    volume = next((v for v in spec.get("volumes", []) if mount and v["name"] == mount["name"]), {})
    configmap = configmaps.get(volume.get("configMap", {}).get("name"))
    if not report.expect(configmap is not None, f"{name}: --config={path} is a rendered ConfigMap's file"):
        return None
    key = str(path.relative_to(mount["mountPath"]))
    if not report.expect(key in configmap.get("data", {}), f"{name}: the ConfigMap has {key}"):
        return None
    return yaml.safe_load(configmap["data"][key])


def server_workload(docs):
    for workload, template, claims in pod_templates(docs):
        for container in template["spec"].get("containers", []):
            if is_server(container):
                return workload, template, claims, container
    return None


def check_collector(report, docs, workload, spec, container, configmaps, secrets, binary):
    name = f"{workload['kind']} {workload['metadata']['name']}, container {container['name']}"
    config = collector_config(spec, container, configmaps, report, name)
    if config is None:
        return
    env_names = {e["name"] for e in container.get("env", [])}
    for reference in sorted(set(ENV_REFERENCE.findall(json.dumps(config)))):
        report.expect(reference in env_names, f"{name}: ${{env:{reference}}} is set in its env")
    pipeline = config["service"]["pipelines"]["logs"]
    exporter = config["exporters"][pipeline["exporters"][0]]
    receiver = config["receivers"][pipeline["receivers"][0]]
    found = server_workload(docs)
    if not report.expect(found is not None, f"{name}: the overlay has a server to post to"):
        return
    server_load, server_template, claims, server_container = found
    server_env = container_env(server_container, configmaps, report)
    # The endpoint names a Service port whose target is the server's HTTP port.
    match = re.fullmatch(r"http://([a-z0-9-]+)(?:\.[a-z0-9.-]+)?:(\d+)/?", exporter.get("endpoint", ""))
    if report.expect(match is not None, f"{name}: the endpoint {exporter.get('endpoint')} is http://SERVICE:PORT"):
        service = next((d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == match[1]), None)
        port = next((p for p in (service or {}).get("spec", {}).get("ports", [])
                     if p["port"] == int(match[2])), None)
        target = port and port.get("targetPort")
        container_port = next((p["containerPort"] for p in server_container.get("ports", [])
                               if target in (p.get("name"), p["containerPort"])), None)
        http_listen = server_env.get("SESSIONLOG_HTTP_LISTEN")
        report.expect(http_listen is not None and container_port == split_host_port(http_listen)[1]
                      and not is_loopback(split_host_port(http_listen)[0]),
                      f"{name}: Service {match[1]} port {match[2]} reaches the server's "
                      f"SESSIONLOG_HTTP_LISTEN ({http_listen})")
    for pattern in receiver.get("include", []):
        mount = mount_of(container, pattern.split("*")[0])
        report.expect(mount is not None and mount.get("readOnly") is True,
                      f"{name}: {pattern} is on a read-only mount")
    report.expect("SESSIONLOG_OTLP_SESSION_FROM" in server_env,
                  f"{name}: the server names sessions of tailed lines (SESSIONLOG_OTLP_SESSION_FROM)")
    collector_bin = os.environ.get("OTELCOL_BINARY")
    if not report.expect(bool(collector_bin), f"{name}: $OTELCOL_BINARY names a Collector to run"):
        return
    try:
        run_collector(report, name, collector_bin, config, receiver, exporter, pipeline,
                      server_template, claims, server_container, server_env, secrets, binary)
    except CheckFailed as err:
        report.fail(f"{name}: {err}")


def run_collector(report, name, collector_bin, config, receiver, exporter, pipeline,
                  server_template, claims, server_container, server_env, secrets, binary):
    """The real Collector with this config against the real server as the
    overlay configures it: lines in the pods' layout arrive, one session per
    container, with the container's name as the app."""
    sandbox = Sandbox(tempfile.mkdtemp(prefix="deploy-check-"))
    token = base64.b16encode(os.urandom(16)).decode().lower()
    collector = None
    try:
        prepare_volumes(sandbox, server_container, server_template["spec"].get("volumes", []),
                        claims, secrets, report)
        token_file = server_env.get("SESSIONLOG_AUTH_TOKEN_FILE")
        if token_file:
            # The overlay's placeholder holds no token: add the one the
            # Collector is given here.
            with open(sandbox.path(token_file), "a", encoding="utf-8") as tokens:
                tokens.write(f"\n{token}\n")
        pods = sandbox.path("/var/log/pods")
        uid, container_name = "0c1d2e3f-4a5b-6c7d-8e9f-000000000001", "app"
        log_dir = pods / f"shop_web-0_{uid}" / container_name
        log_dir.mkdir(parents=True)
        lines = [f"line {n}" for n in range(1, 21)]
        (log_dir / "0.log").write_text("".join(
            f"2025-01-01T00:00:00.{n:09d}Z stdout F {text}\n" for n, text in enumerate(lines, 1)))
        with Server(binary, server_env, sandbox) as server:
            local = dict(config)
            local["receivers"] = {pipeline["receivers"][0]: dict(
                receiver, start_at="beginning", poll_interval="50ms",
                include=[str(sandbox.path(p)) for p in receiver["include"]],
                exclude=[str(sandbox.path(p)) for p in receiver.get("exclude", [])])}
            local["exporters"] = {pipeline["exporters"][0]: dict(
                exporter, endpoint=f"http://{server.http_address}",
                retry_on_failure={"enabled": True, "initial_interval": "100ms", "max_interval": "1s"})}
            local["service"] = dict(config["service"], telemetry={"metrics": {"level": "none"}})
            config_path = sandbox.root.parent / "collector.json"
            config_path.write_text(json.dumps(local))
            env = {k: v for k, v in os.environ.items() if k != "OTELCOL_BINARY"}
            env["SESSIONLOG_TOKEN"] = token
            collector_log = open(sandbox.root.parent / "collector.log", "w", encoding="utf-8")
            collector = subprocess.Popen([collector_bin, f"--config={config_path}"], env=env,
                                         stdin=subprocess.DEVNULL, stdout=collector_log,
                                         stderr=subprocess.STDOUT)
            session_id = f"{uid}:{container_name}"
            got, app = wait_for_entries(server, token, session_id, len(lines))
            report.expect(got == lines, f"{name}: the real Collector's lines arrive in order in "
                          f"session {session_id}", f"got {got}")
            report.expect(app == container_name, f"{name}: the session's app is the container's name",
                          f"app {app!r}")
            collector.send_signal(signal.SIGTERM)
            report.expect(collector.wait(timeout=30) == 0, f"{name}: the Collector stops cleanly")
            report.expect(server.stop() == 0, f"{name}: the server exits 0 on SIGTERM")
    finally:
        if collector is not None and collector.poll() is None:
            collector.kill()
            collector.wait()
        shutil.rmtree(sandbox.root.parent, ignore_errors=True)


def wait_for_entries(server, token, session_id, count):
    """Polls the HTTP API (the Collector exports on its own schedule) until
    the session holds `count` entries; their messages and the app name."""
    deadline = time.monotonic() + COLLECTOR_SECONDS
    request = lambda path: urllib.request.Request(  # noqa: E731
        f"http://{server.http_address}{path}", headers={"Authorization": f"Bearer {token}"})
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request(f"/api/v1/sessions/{session_id}/entries"),
                                        timeout=CALL_TIMEOUT_SECONDS) as response:
                entries = json.loads(response.read())["entries"]
            if len(entries) >= count:
                with urllib.request.urlopen(request(f"/api/v1/sessions/{session_id}"),
                                            timeout=CALL_TIMEOUT_SECONDS) as response:
                    app = json.loads(response.read())["app_name"]
                return [entry["message"] for entry in entries], app
        except urllib.error.HTTPError as err:
            if err.code != 404:
                raise CheckFailed(f"GET entries of {session_id}: {err.code} {err.read()[:200]!r}")
        time.sleep(0.2)
    raise CheckFailed(f"session {session_id} did not get {count} entries within {COLLECTOR_SECONDS} s "
                      f"(server log: {server.log[-5:]})")


# --- the Dockerfile ---------------------------------------------------------


def dockerfile_final_stage(path):
    """The last stage's instructions as (KEYWORD, rest), continuations joined."""
    text = re.sub(r"\\\n", " ", Path(path).read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            instructions = []
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def check_dockerfile(path, binary):
    report = Report("Dockerfile")
    stage = dockerfile_final_stage(path)
    env = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(rest))
    value = {keyword: rest for keyword, rest in stage}
    report.expect(json.loads(value.get("ENTRYPOINT", "null")) == ["sessionlog"], "ENTRYPOINT [\"sessionlog\"]")
    report.expect(json.loads(value.get("CMD", "null")) == ["serve"], "CMD [\"serve\"] by default")
    report.expect(value.get("USER", "").split(":")[0] == "65532", "runs as uid 65532")
    listeners = split_list(env.get("SESSIONLOG_LISTEN", DEFAULTS["SESSIONLOG_LISTEN"]))
    ports = {str(split_host_port(a)[1]) for a in listeners if not a.startswith("unix:")}
    report.expect(value.get("EXPOSE") in ports, f"EXPOSE {value.get('EXPOSE')} is a TCP listener's port")
    grace = parse_duration_seconds(env.get("SESSIONLOG_SHUTDOWN_GRACE", DEFAULTS["SESSIONLOG_SHUTDOWN_GRACE"]))
    report.expect(grace + FLUSH_MARGIN_SECONDS <= DOCKER_STOP_TIMEOUT_SECONDS,
                  f"shutdown grace {grace:g} s + {FLUSH_MARGIN_SECONDS} s fits Docker's default "
                  f"{DOCKER_STOP_TIMEOUT_SECONDS} s stop timeout")
    volumes = json.loads(value.get("VOLUME", "[]"))
    data_dir = env.get("SESSIONLOG_DATA_DIR", DEFAULTS["SESSIONLOG_DATA_DIR"])
    report.expect(any(PurePosixPath(v) in PurePosixPath(data_dir).parents for v in volumes),
                  f"data dir {data_dir} is below a VOLUME")
    healthcheck = value.get("HEALTHCHECK", "")
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3:]) if "CMD" in healthcheck else []
    sandbox = Sandbox(tempfile.mkdtemp(prefix="deploy-check-"))
    try:
        with Server(binary, env, sandbox) as server:
            run_health(report, server, command, DEFAULT_SERVER, "HEALTHCHECK")
            report.expect(server.stop() == 0, "the server exits 0 on SIGTERM")
    except CheckFailed as err:
        report.fail(str(err))
    finally:
        shutil.rmtree(sandbox.root.parent, ignore_errors=True)
    return report


def main(argv):
    if len(argv) < 3:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    binary, dockerfile, overlays = argv[0], argv[1], argv[2:]
    reports = [check_dockerfile(dockerfile, binary)]
    reports += [check_overlay(path, binary) for path in overlays]
    failed = [r for r in reports if r.failures]
    for report in failed:
        print(f"deploy_check: {report.name}: {len(report.failures)} check(s) failed:", file=sys.stderr)
        for failure in report.failures:
            print(f"  - {failure}", file=sys.stderr)
    checks = sum(r.passed + len(r.failures) for r in reports)
    print(f"deploy_check: {'FAILED' if failed else 'ok'} ({checks} checks)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
