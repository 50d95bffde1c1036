"""A one-machine SLURM cluster for tests: munged, slurmctld and slurmd, private config and state.

Everything lives in a temporary folder (the munge key and socket, ``slurm.conf``, state, spool,
logs) on free ports, so nothing of the machine's own munge or SLURM setup is read or changed; the
daemons are stopped when the fixture ends. It needs Debian's ``slurm-wlm`` and ``munge`` (22.05
or later) and root (``SlurmUser=root``; munged is started as the ``munge`` user).

Facts behind the configuration: ``proctrack/linuxproc``, ``task/none`` and
``jobacct_gather/none`` need no cgroups, and there is no ``cgroup.conf`` (22.05 cannot switch
its cgroup plugin off, and without the file slurmd starts).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol")
INSTALL_HINT = "Debian: apt-get install -y slurm-wlm munge, as root"


def why_unavailable() -> str | None:
    """Say why a private cluster cannot start here, or None when it can."""
    missing = [name for name in DAEMONS if _which(name) is None]
    if missing:
        return f"SLURM/munge not installed (missing {', '.join(missing)}; {INSTALL_HINT})"
    if os.geteuid() != 0:
        return f"SLURM daemons need root here (SlurmUser=root; {INSTALL_HINT})"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return f"no 'munge' user to run munged as ({INSTALL_HINT})"
    return None


def _which(name: str) -> str | None:
    """Find a program on PATH or in the sbin folders Debian installs the daemons into."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


@dataclass
class SlurmCluster:
    """A running private cluster: one node (this machine) and one partition named ``test``."""

    root: Path
    conf: Path
    node: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """This process's environment without SLURM's variables, and SLURM_CONF for this cluster."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        return {**env, "SLURM_CONF": str(self.conf)}

    def command(self, *args: str, timeout: float = 30) -> str:
        """Run a SLURM client command (``sbatch``, ``squeue``, ...) and return its stdout."""
        done = subprocess.run(
            [_which(args[0]) or args[0], *args[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def sbatch(self, script: Path, *options: str) -> str:
        """Submit ``script`` with ``options``; return the job id."""
        return self.command("sbatch", "--parsable", *options, str(script)).strip().split(";")[0]

    def wait(self, job_ids: list[str], *, timeout: float = 300) -> dict[str, tuple[str, str]]:
        """Wait until none of ``job_ids`` is queued or running.

        Returns:
            ``{job id (array tasks as "12_0"): (JobState, ExitCode)}`` from ``scontrol``.
        """
        deadline = time.monotonic() + timeout
        while self.command("squeue", "-h", "-j", ",".join(job_ids)).strip():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"jobs {job_ids} still queued after {timeout:.0f} s:\n{self.logs()}"
                )
            time.sleep(0.5)
        states: dict[str, tuple[str, str]] = {}
        for job in job_ids:
            for line in self.command("scontrol", "-o", "show", "job", job).splitlines():
                fields = dict(re.findall(r"(\w+)=(\S*)", line))
                task = fields.get("ArrayTaskId")
                name = f"{fields['ArrayJobId']}_{task}" if task else fields["JobId"]
                states[name] = (fields["JobState"], fields["ExitCode"])
        return states

    def logs(self) -> str:
        """The daemons' log tails, for failure messages."""
        parts = []
        for log in sorted(self.root.rglob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-15:]
            parts.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(parts)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start_munged(folder: Path) -> tuple[subprocess.Popen, Path]:
    """Start a private munged (as the munge user) with a fresh key; return it and its socket."""
    user = pwd.getpwnam("munge")
    os.chown(folder, user.pw_uid, user.pw_gid)
    folder.chmod(0o755)  # munged wants the socket's folder open to all (execute)
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chown(key, user.pw_uid, user.pw_gid)
    key.chmod(0o400)
    sock = folder / "munge.socket"
    names = {"--key-file": key, "--socket": sock, "--pid-file": folder / "munged.pid"}
    names |= {"--log-file": folder / "munged.log", "--seed-file": folder / "munged.seed"}
    args = [_which("munged") or "munged", "-F", *(f"{k}={v}" for k, v in names.items())]
    log = (folder / "munged.stderr.log").open("w")
    process = subprocess.Popen(args, user="munge", stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    _wait_for(lambda: sock.exists(), "munged's socket", process, timeout=15)
    return process, sock


def _slurm_conf(root: Path, node: str, munge_socket: Path) -> str:
    ctld_port, node_port = _free_ports(2)
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    cpus = os.cpu_count() or 1
    return f"""ClusterName=sliceseg-test
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={node_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _wait_for(ready, what: str, process: subprocess.Popen, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what}: the daemon exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(0.2)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _node_is_idle(cluster: SlurmCluster) -> bool:
    with suppress(RuntimeError, subprocess.TimeoutExpired):
        return "idle" in cluster.command("sinfo", "-h", "-o", "%T", timeout=10)
    return False


@contextmanager
def slurm_cluster(root: Path, *, timeout: float = 60) -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd with everything under ``root``; stop them on exit.

    Raises:
        RuntimeError / TimeoutError: a daemon exited or did not come up (the message holds the
            daemons' log tails).
    """
    node = socket.gethostname().split(".")[0]
    munge_dir = Path(tempfile.mkdtemp(prefix="sliceseg-munge-"))  # munged refuses pytest's tmp
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cluster = SlurmCluster(root=root, conf=root / "slurm.conf", node=node)
    try:
        munged, munge_socket = _start_munged(munge_dir)
        cluster.processes.append(munged)
        cluster.conf.write_text(_slurm_conf(root, node, munge_socket))
        env = cluster.env
        for daemon, extra in (("slurmctld", ["-c", "-i"]), ("slurmd", ["-N", node])):
            args = [_which(daemon) or daemon, "-D", "-f", str(cluster.conf), *extra]
            log = (root / f"{daemon}.stderr.log").open("w")
            cluster.processes.append(
                subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            )
        try:
            _wait_for(
                lambda: _node_is_idle(cluster), "the node", cluster.processes[-1], timeout=timeout
            )
        except (RuntimeError, TimeoutError) as error:
            raise RuntimeError(f"{error}:\n{cluster.logs()}") from error
        yield cluster
    finally:
        for process in reversed(cluster.processes):
            _stop(process)
        shutil.rmtree(munge_dir, ignore_errors=True)
