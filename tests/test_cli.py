"""No traceback reaches a person: each failure of the `kubemonitor` command is one line
that names the fix, exit status 2. Real processes, a real terminal, a real influxd."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from kubemonitor.influxd import free_port

KUBEMONITOR = [sys.executable, "-m", "kubemonitor"]


def one_line_error(result_or_text, *words):
    text = result_or_text if isinstance(result_or_text, str) else result_or_text.stderr
    assert "Traceback" not in text, text
    # "kubemonitor: ..." from a command, "kubemonitor simulate: ..." from its argument parser
    lines = [line for line in text.splitlines() if re.match(r"kubemonitor( [a-z]+)?: ", line)]
    assert len(lines) == 1, text
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_serve_on_a_busy_port_says_so_in_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = subprocess.run([*KUBEMONITOR, "serve", str(port), "--address", "127.0.0.1", "--log-dir", str(tmp_path),
                            "--users-file", str(tmp_path / "users.yaml")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    one_line_error(r, f"port {port} is in use", f"kubemonitor serve {port + 1}")


def test_adduser_without_a_terminal_and_without_password_stdin(tmp_path):
    r = subprocess.run([*KUBEMONITOR, "adduser", "--username=carol", "--email=c@example.org",
                        "--users-file", str(tmp_path / "u.yaml")], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2
    one_line_error(r, "no terminal", "--password-stdin")
    assert not (tmp_path / "u.yaml").exists()
    r = subprocess.run([*KUBEMONITOR, "adduser", "--username=carol", "--email=c@example.org", "--password-stdin",
                        "--users-file", str(tmp_path / "u.yaml")], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2
    one_line_error(r, "no password on standard input")


def test_ctrl_d_at_the_password_prompt(tmp_path):
    """A person presses Ctrl-D at the prompt: one line, nothing written."""
    import pty
    pid, fd = pty.fork()
    if pid == 0:  # child: the CLI on a terminal
        os.execv(sys.executable, [*KUBEMONITOR, "adduser", "--username=dora", "--email=d@example.org",
                                  "--users-file", str(tmp_path / "u.yaml")])
    output = b""
    while b"Password" not in output:
        output += os.read(fd, 1024)
    os.write(fd, b"\x04")  # Ctrl-D on an empty line: end of input
    try:
        while chunk := os.read(fd, 1024):
            output += chunk
    except OSError:
        pass
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2
    one_line_error(output.decode(errors="replace").replace("\r", ""), "no password given")
    assert not (tmp_path / "u.yaml").exists()


def test_simulate_live_survives_a_hung_influxdb_with_one_line_each_way(running_influxd, scratch_db):
    """SIGSTOP freezes influxd (it keeps its sockets open: a hang, not a refusal)."""
    proc = subprocess.Popen([*KUBEMONITOR, "simulate", "--interval", "0.5s", "--namespaces", "1", "--pods", "1",
                             "--nodes", "1", "--influxdb-host", "127.0.0.1", "--influxdb-port", str(running_influxd.http_port),
                             "--influxdb-db", scratch_db, "--influxdb-timeout", "1"],
                            stderr=subprocess.PIPE, text=True)
    lines = []

    def wait_for(word, timeout=20):
        deadline = time.monotonic() + timeout
        while not any(word in line for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            lines.append(proc.stderr.readline())

    try:
        wait_for("writing a sample every")
        os.kill(running_influxd.process.pid, signal.SIGSTOP)
        try:
            wait_for("did not answer within 1 s")
            time.sleep(2.5)  # two more samples time out in the same outage: they must stay quiet
        finally:
            os.kill(running_influxd.process.pid, signal.SIGCONT)
        wait_for("takes samples again")
        assert proc.poll() is None  # still writing
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=20)[1]
    text = "".join(lines) + rest
    assert proc.returncode == 0 and "Traceback" not in text, text
    # Once per outage, not per sample: each "did not answer" follows the start or a recovery. (A loaded
    # machine may see influxd stall again right after SIGCONT: a second outage, with its own line.)
    events = [line for line in text.splitlines() if "did not answer" in line or "takes samples again" in line]
    assert events and "did not answer" in events[0], text
    assert all("did not answer" not in a or "did not answer" not in b for a, b in zip(events, events[1:])), text
    assert running_influxd.query("SELECT count(*) FROM \"cpu/usage_rate\"", db=scratch_db)["results"][0]["series"]


def test_simulate_against_nothing_is_one_line():
    r = subprocess.run([*KUBEMONITOR, "simulate", "--backfill", "1h", "--influxdb-host", "127.0.0.1",
                        "--influxdb-port", str(free_port())], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    one_line_error(r, "unreachable", "INFLUXDB_HOST")


@pytest.mark.parametrize("argv,words", [
    (["serve", "eighty"], ["PORT 'eighty'"]),
    (["simulate", "--namespaces", "0"], ["--namespaces"]),
    (["deluser", "nobody"], ["no user 'nobody'"]),
])
def test_other_mistakes_are_one_line(tmp_path, argv, words):
    r = subprocess.run([*KUBEMONITOR, *argv, *(["--users-file", str(tmp_path / "u.yaml")] if argv[0] == "deluser" else [])],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    one_line_error(r, *words)


def test_nothing_imports_the_command_line_module():
    import ast
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kubemonitor")
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".py") and name not in ("cli.py", "__main__.py"):
                tree = ast.parse(open(os.path.join(folder, name)).read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.ImportFrom):
                        assert node.module not in ("cli", "kubemonitor.cli") and \
                            not (node.module is None and any(a.name == "cli" for a in node.names)), (name, node.lineno)


@pytest.mark.parametrize("command", [["statement", "--period", "2026-10"], ["serve", str(free_port()), "--address", "127.0.0.1"]])
def test_a_named_rate_card_that_is_missing_is_one_line_and_nothing_starts(tmp_path, command):
    """Usage-only statements in UTC months (kept as closed!) from a mistyped path are worse
    than an error; only the default path may be absent."""
    missing = tmp_path / "nope.yaml"
    env = {**os.environ, "KUBEMONITOR_BILLING_FILE": str(missing), "KUBEMONITOR_LOG_DIR": str(tmp_path),
           "KUBEMONITOR_USERS_FILE": str(tmp_path / "users.yaml"), "INFLUXDB_HOST": "127.0.0.1",
           "INFLUXDB_PORT": str(free_port())}
    r = subprocess.run([*KUBEMONITOR, *command], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    one_line_error(r, "KUBEMONITOR_BILLING_FILE", str(missing), "does not exist", "unset")
    assert r.stdout == ""


def test_the_default_rate_card_path_may_be_absent():
    from kubemonitor import ratecard
    from kubemonitor.config import Config
    config = Config()
    assert not config.billing_file_named and config.replace(billing_file="/tmp/x.yaml").billing_file_named
    assert ratecard.load("/nonexistent/conf/billing.yaml") is ratecard.DEFAULT
    with pytest.raises(ratecard.RateCardError, match="does not exist"):
        ratecard.load("/nonexistent/billing.yaml", required=True)


@pytest.mark.parametrize("argv,words", [
    (["statement", "--period", "2026-11", "--by", "nope"], ["--by", "invalid choice"]),
    (["statement"], ["one of the arguments --period --from is required"]),
    (["rollup"], ["--from"]),
    (["apiclient"], ["ACTION"]),
    (["apiclient", "rotate"], ["name"]),
])
def test_usage_errors_are_one_line_and_the_way_to_help(argv, words):
    """argparse printed the whole usage first: 30 lines of setting flags above the error."""
    r = subprocess.run([*KUBEMONITOR, *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.splitlines()
    command = " ".join(["kubemonitor", *[a for a in argv[:2] if not a.startswith("-")][:2]])
    assert all(w in line for w in words) and line.endswith(f"see `{command} --help`"), r.stderr


def test_simulates_help_names_every_source():
    """`kubemonitor --help` said simulate writes "(Heapster schema)" only."""
    from kubemonitor.collectors import SOURCES
    top = subprocess.run([*KUBEMONITOR, "--help"], capture_output=True, text=True, timeout=30).stdout
    line = " ".join(top[top.index("simulate"):].split("demo")[0].split())
    assert all(name in line for name in SOURCES), line


def test_adduser_makes_the_default_conf_folder_but_not_a_named_one(tmp_path):
    """The package carries no conf/ of the operator's: the default users file's folder is
    made on first use (owner only); a folder in a path someone typed is never guessed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEMONITOR_")}
    env["KUBEMONITOR_LOG_DIR"] = str(tmp_path / "logs")
    add = [*KUBEMONITOR, "adduser", "--username=erin", "--email=e@example.org", "--password-stdin"]
    r = subprocess.run(add, input="a-long-password-1\n", cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "conf" / "users.yaml").exists() and (os.stat(tmp_path / "conf").st_mode & 0o777) == 0o700
    r = subprocess.run([*add, "--users-file", str(tmp_path / "typo" / "users.yaml")], input="a-long-password-1\n",
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and not (tmp_path / "typo").exists()
    one_line_error(r, "does not exist", "mkdir -p")
