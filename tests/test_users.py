"""The users file and its CLI (README "Users"): real processes, real crashes, real files."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from kubemonitor.users import UserInputError, UsersFileError, UserStore, check_password, hash_password


def cli(*args, stdin=None, users_file=None, timeout=60):
    cmd = [sys.executable, "-m", "kubemonitor", *args]
    if users_file:
        cmd += ["--users-file", str(users_file)]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)


def test_adduser_list_passwd_deluser(tmp_path):
    f = tmp_path / "users.yaml"
    r = cli("adduser", "--username=alice", "--email=alice@example.org", "--password-stdin", stdin="pw-one\n", users_file=f)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    data = yaml.safe_load(f.read_text())
    entry = data["users"]["alice"]
    assert entry["email"] == "alice@example.org" and entry["password"].startswith("$2b$12$") and entry["created"].endswith("Z")
    assert "pw-one" not in f.read_text()
    assert check_password("pw-one", entry["password"])
    r = cli("users", users_file=f)
    header, alice = r.stdout.splitlines()
    assert r.returncode == 0 and header.split("\t") == ["USERNAME", "EMAIL", "CREATED", "SCOPE"]
    assert alice.startswith("alice\talice@example.org\t")
    r = cli("passwd", "alice", "--password-stdin", stdin="pw-two\n", users_file=f)
    assert r.returncode == 0, r.stderr
    assert check_password("pw-two", yaml.safe_load(f.read_text())["users"]["alice"]["password"])
    r = cli("deluser", "alice", users_file=f)
    assert r.returncode == 0 and "alice" not in (yaml.safe_load(f.read_text())["users"] or {})


@pytest.mark.parametrize("args,stdin,words", [
    (["--username=bob", "--email=not-an-email"], "pw\n", ["e-mail"]),
    (["--username=-bob", "--email=b@example.org"], "pw\n", ["username"]),
    (["--username=bob", "--email=b@example.org"], "\n", ["empty"]),
    (["--username=bob", "--email=b@example.org"], "x" * 73 + "\n", ["73 bytes", "72"]),
    (["--username=bob", "--email=b@example.org"], "é" * 37 + "\n", ["74 bytes"]),
])
def test_adduser_refuses_bad_input_clearly(tmp_path, args, stdin, words):
    r = cli("adduser", *args, "--password-stdin", stdin=stdin, users_file=tmp_path / "u.yaml")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    for word in words:
        assert word in r.stderr
    assert not (tmp_path / "u.yaml").exists()


def test_duplicate_and_unknown_users(tmp_path):
    f = tmp_path / "u.yaml"
    UserStore(str(f), rounds=4).add("carol", "c@example.org", "pw")
    r = cli("adduser", "--username=carol", "--email=c@example.org", "--password-stdin", stdin="pw\n", users_file=f)
    assert r.returncode == 2 and "already exists" in r.stderr
    for cmd in (("passwd", "nobody", "--password-stdin"), ("deluser", "nobody")):
        r = cli(*cmd, stdin="pw\n", users_file=f)
        assert r.returncode == 2 and "no user 'nobody'" in r.stderr


def test_password_prompted_twice_must_match(tmp_path):
    """getpass reads the terminal; drive it through a pseudo-terminal like a person would."""
    import pty
    f = tmp_path / "u.yaml"
    for answers, ok in ((("secret-1", "secret-1"), True), (("secret-1", "other"), False)):
        pid, fd = pty.fork()
        if pid == 0:  # child: the CLI on a terminal
            os.execv(sys.executable, [sys.executable, "-m", "kubemonitor", "adduser", f"--username=u{int(ok)}",
                                      "--email=u@example.org", "--users-file", str(f)])
        output = b""
        for answer in answers:
            while b"Password" not in output.split(b"\n")[-1]:
                output += os.read(fd, 1024)
            os.write(fd, answer.encode() + b"\n")
            output = output.rsplit(b"\n", 1)[0] + b"\n"
        rest = b""
        try:
            while True:
                chunk = os.read(fd, 1024)
                if not chunk:
                    break
                rest += chunk
        except OSError:
            pass
        _, status = os.waitpid(pid, 0)
        assert (os.waitstatus_to_exitcode(status) == 0) == ok, rest
        if not ok:
            assert b"differ" in rest
    assert set(UserStore(str(f)).read()) == {"u1"}


def test_concurrent_adduser_processes_lose_nothing(tmp_path):
    f = tmp_path / "u.yaml"
    procs = [subprocess.Popen([sys.executable, "-m", "kubemonitor", "adduser", f"--username=user{i}",
                               f"--email=user{i}@example.org", "--password-stdin", "--users-file", str(f)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(8)]
    for p in procs:
        p.stdin.write("pw\n")
        p.stdin.close()
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    assert set(UserStore(str(f)).read()) == {f"user{i}" for i in range(8)}
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


# The same writing code serves both files the CLI edits; each is checked against a killed writer.
STORES = {
    "users": ("from kubemonitor.users import UserStore as Store", "Store(PATH, rounds=4).add(NAME, NAME + '@example.org', 'pw')"),
    "clients": ("from kubemonitor.apiclients import ClientStore as Store", "Store(PATH).add(NAME)"),
}


@pytest.mark.parametrize("kind", sorted(STORES))
def test_a_writer_killed_mid_write_leaves_the_old_file_intact(tmp_path, kind):
    f = str(tmp_path / f"{kind}.yaml")
    importing, adding = STORES[kind]

    def add(name):
        namespace = {"PATH": f, "NAME": name}
        exec(importing + "\n" + adding, namespace)
        return namespace["Store"]

    store = add("dave")
    before = open(f).read()
    script = textwrap.dedent(f"""
        import os, sys, time
        from kubemonitor import filestore
        def slow_write(path, text, mode=0o600):
            fd = os.open(path + ".partial", os.O_WRONLY | os.O_CREAT, mode)
            os.write(fd, text[: len(text) // 2].encode())
            print("writing", flush=True)
            time.sleep(60)
        filestore.atomic_write = slow_write
        PATH, NAME = {f!r}, "eve"
        {importing}
        {adding}
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"  # it holds the lock, half-way through
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert open(f).read() == before
    started = time.monotonic()
    add("frank")  # the dead writer's lock is gone
    assert time.monotonic() - started < 10
    assert set(store(f).read()) == {"dave", "frank"}


def test_a_crash_inside_the_real_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    f = tmp_path / "u.yaml"
    store = UserStore(str(f), rounds=4)
    store.add("gina", "g@example.org", "pw")
    before = f.read_text()

    def boom(*_a):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.add("hank", "h@example.org", "pw")
    assert f.read_text() == before
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


@pytest.mark.parametrize("content,words", [
    ("users:\n  alice: [\n", ["not valid YAML", "line"]),
    ("users:\n  alice:\n    email: a@example.org\n", ["line 3", "no password"]),
    ("users:\n  alice:\n    email: a@example.org\n    password: hunter2\n", ["line 4", "not a bcrypt hash", "passwd alice"]),
    ("- just\n- a list\n", ["line 1"]),
])
def test_a_corrupt_file_is_named_with_its_line(tmp_path, content, words):
    f = tmp_path / "u.yaml"
    f.write_text(content)
    with pytest.raises(UsersFileError) as info:
        UserStore(str(f)).read()
    assert str(f) in str(info.value)
    for word in words:
        assert word in str(info.value)
    r = cli("users", users_file=f)
    assert r.returncode == 2 and str(f) in r.stderr and "Traceback" not in r.stderr
    assert "hunter2" not in r.stderr


def test_serve_refuses_a_corrupt_or_unreadable_users_file(tmp_path):
    f = tmp_path / "u.yaml"
    f.write_text("users: [\n")
    r = subprocess.run([sys.executable, "-m", "kubemonitor", "serve", "8000", "--log-dir", str(tmp_path),
                        "--users-file", str(f)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and str(f) in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_server_notices_a_changed_file(tmp_path):
    f = tmp_path / "u.yaml"
    server_side = UserStore(str(f), recheck_seconds=0)
    assert server_side.get("ivy") is None
    UserStore(str(f), rounds=4).add("ivy", "i@example.org", "pw")
    assert server_side.get("ivy") is not None
    assert server_side.verify("ivy", "pw") and not server_side.verify("ivy", "nope")
    f.write_text("users: [\n")  # broken by hand: keep serving the last good list, report it
    assert server_side.get("ivy") is not None and "not valid YAML" in server_side.error


def test_passwords_over_72_bytes_never_raise():
    h = hash_password("short", rounds=4)
    assert check_password("short", h)
    assert not check_password("x" * 100, h)
    assert not check_password("", h)
    assert not check_password("short", "not-a-hash")
    with pytest.raises(UserInputError):
        hash_password("y" * 73)
