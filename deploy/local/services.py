"""Start and stop the real local services the tests need: Apache Kafka (KRaft) and Redis.

Usage: ``python deploy/local/services.py up|down|status`` (``make services-up``/``-down``).

- Kafka 4.x runs as one combined broker+controller JVM from the official jars on Maven Central,
  copied into ``.cache/kafka/libs`` by ``mvn dependency:copy-dependencies`` (see ``pom.xml`` here).
- Redis is the Debian ``redis-server`` on its own port, without persistence.

Both listen on loopback only. ``up`` first tears down whatever a previous run left (pid files,
then the ports), picks free ports, waits until Kafka really accepts a produce *and* a consume, then
writes ``.services.env`` in the repo root (``FAME_KAFKA_BOOTSTRAP_SERVERS``, ``FAME_REDIS_URL``).
All state lives in ``.cache/services`` (git-ignored).
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = REPO_ROOT / ".cache"
KAFKA_LIBS = CACHE / "kafka" / "libs"
STATE = CACHE / "services"
ENV_FILE = REPO_ROOT / ".services.env"
POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"

PREFERRED_PORTS = {"kafka": 19092, "controller": 19093, "redis": 16379}
KAFKA_READY_TIMEOUT_S = 120.0
REDIS_READY_TIMEOUT_S = 20.0
KAFKA_HEAP = os.environ.get("FAME_KAFKA_HEAP", "-Xms256m -Xmx768m")


def log(message: str) -> None:
    print(f"[services] {message}", file=sys.stderr, flush=True)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(preferred: int, taken: set[int]) -> int:
    """The preferred port when free, else any free port the kernel hands out."""
    if preferred not in taken and port_is_free(preferred):
        return preferred
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port


def stop_pidfile(name: str) -> None:
    """Stop the process recorded in ``<name>.pid`` (TERM, then KILL after a grace period)."""
    pidfile = STATE / f"{name}.pid"
    if not pidfile.exists():
        return
    try:
        pid = int(pidfile.read_text().strip())
    except ValueError:
        pidfile.unlink()
        return
    if _signal(pid, signal.SIGTERM):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            log(f"{name} (pid {pid}) ignored SIGTERM; killing")
            _signal(pid, signal.SIGKILL)
            time.sleep(0.5)
    pidfile.unlink(missing_ok=True)
    log(f"stopped {name} (pid {pid})")


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        finished = 0
    if finished == pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False


def spawn(name: str, command: list[str], log_path: Path) -> int:
    """Start a service in its own session (it outlives this script) and record its pid."""
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (STATE / f"{name}.pid").write_text(str(process.pid))
    return process.pid


def ensure_kafka_jars() -> None:
    """Copy the Kafka broker jars from Maven Central once; later runs reuse the cache."""
    marker = KAFKA_LIBS / ".complete"
    if marker.exists() and marker.read_text() == POM.read_text():
        return
    if not shutil.which("mvn"):
        raise SystemExit("mvn (Apache Maven) is needed to fetch the Kafka jars; install maven")
    if KAFKA_LIBS.exists():
        shutil.rmtree(KAFKA_LIBS)
    log("fetching Apache Kafka jars from Maven Central (once)")
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={KAFKA_LIBS}",
        ],
        check=True,
    )
    marker.write_text(POM.read_text())


def ensure_redis_server() -> str:
    """Path to redis-server, installing the Debian package when it is missing."""
    found = shutil.which("redis-server")
    if found:
        return found
    if not shutil.which("apt-get"):
        raise SystemExit("redis-server not found and apt-get is unavailable: install redis")
    log("installing the Debian package redis-server")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "redis-server"]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(install, env=env, check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("redis-server")
    if not found:
        raise SystemExit("redis-server still not found after installing it")
    return found


def kafka_properties(data_dir: Path, port: int, controller_port: int) -> str:
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={data_dir}",
            "num.partitions=1",
            "auto.create.topics.enable=true",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "log.flush.interval.messages=1",
            "",
        ]
    )


LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = FILE
"""


def start_kafka(port: int, controller_port: int) -> None:
    ensure_kafka_jars()
    java = shutil.which("java")
    if not java:
        raise SystemExit("java (17+) is needed to run Kafka")
    kafka_dir = STATE / "kafka"
    shutil.rmtree(kafka_dir, ignore_errors=True)
    data_dir = kafka_dir / "data"
    data_dir.mkdir(parents=True)
    props = kafka_dir / "server.properties"
    props.write_text(kafka_properties(data_dir, port, controller_port))
    log4j = kafka_dir / "log4j2.properties"
    log4j.write_text(LOG4J2.format(log=kafka_dir / "server.log", level="INFO"))
    classpath = f"{KAFKA_LIBS}/*"
    jvm = [java, *KAFKA_HEAP.split(), f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    subprocess.run(
        [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    pid = spawn("kafka", [*jvm, "kafka.Kafka", str(props)], kafka_dir / "stdout.log")
    log(f"started Kafka (pid {pid}) on 127.0.0.1:{port}")


def wait_kafka_ready(bootstrap: str) -> None:
    """Ready means a record produced to a fresh topic can be consumed back, not an open port."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import KafkaError

    deadline = time.monotonic() + KAFKA_READY_TIMEOUT_S
    topic = f"services-ready-{uuid.uuid4().hex[:8]}"
    payload = uuid.uuid4().bytes
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        _check_kafka_alive()
        try:
            producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5)
            producer.send(topic, payload).get(timeout=20)
            producer.close()
            consumer = KafkaConsumer(
                bootstrap_servers=bootstrap, consumer_timeout_ms=10_000, enable_auto_commit=False
            )
            partition = TopicPartition(topic, 0)
            consumer.assign([partition])
            consumer.seek_to_beginning(partition)
            values = [record.value for record in consumer]
            consumer.close()
            if payload in values:
                log(f"Kafka ready: produced and consumed on {topic}")
                return
            last_error = RuntimeError(f"record not read back from {topic}")
        except (KafkaError, OSError) as error:
            last_error = error
        time.sleep(1.0)
    raise SystemExit(f"Kafka not ready after {KAFKA_READY_TIMEOUT_S:.0f}s: {last_error}")


def _check_kafka_alive() -> None:
    pid = int((STATE / "kafka.pid").read_text())
    if not _alive(pid):
        tail = (STATE / "kafka" / "stdout.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"Kafka exited during startup:\n{tail}")


def start_redis(port: int) -> None:
    server = ensure_redis_server()
    redis_dir = STATE / "redis"
    shutil.rmtree(redis_dir, ignore_errors=True)
    redis_dir.mkdir(parents=True)
    command = [
        server,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(redis_dir),
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
    ]
    pid = spawn("redis", command, redis_dir / "redis.log")
    log(f"started redis-server (pid {pid}) on 127.0.0.1:{port}")


def wait_redis_ready(url: str) -> None:
    import redis

    deadline = time.monotonic() + REDIS_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            client = redis.Redis.from_url(url, socket_timeout=2)
            client.set("services:ready", "1", ex=5)
            if client.get("services:ready") == b"1":
                log("Redis ready")
                return
        except redis.RedisError:
            time.sleep(0.2)
    raise SystemExit(f"Redis not ready after {REDIS_READY_TIMEOUT_S:.0f}s")


def down() -> None:
    stop_pidfile("kafka")
    stop_pidfile("redis")
    ENV_FILE.unlink(missing_ok=True)


def up() -> None:
    down()
    STATE.mkdir(parents=True, exist_ok=True)
    taken: set[int] = set()
    ports: dict[str, int] = {}
    for name, preferred in PREFERRED_PORTS.items():
        ports[name] = pick_port(preferred, taken)
        taken.add(ports[name])
    bootstrap = f"127.0.0.1:{ports['kafka']}"
    redis_url = f"redis://127.0.0.1:{ports['redis']}/0"
    start_redis(ports["redis"])
    start_kafka(ports["kafka"], ports["controller"])
    try:
        wait_redis_ready(redis_url)
        wait_kafka_ready(bootstrap)
    except BaseException:
        down()
        raise
    ENV_FILE.write_text(
        "# written by `make services-up`; removed by `make services-down`\n"
        f"FAME_KAFKA_BOOTSTRAP_SERVERS={bootstrap}\n"
        f"FAME_REDIS_URL={redis_url}\n"
    )
    log(f"wrote {ENV_FILE.name}: Kafka {bootstrap}, Redis {redis_url}")


def status() -> int:
    code = 0
    for name in ("kafka", "redis"):
        pidfile = STATE / f"{name}.pid"
        running = pidfile.exists() and _alive(int(pidfile.read_text().strip() or 0))
        print(f"{name}: {'running' if running else 'stopped'}")
        code |= 0 if running else 1
    if ENV_FILE.exists():
        print(ENV_FILE.read_text().strip())
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    action = parser.parse_args().action
    if action == "up":
        up()
    elif action == "down":
        down()
    else:
        return status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
