"""The `kubemonitor` command: every subcommand's arguments, and the small glue that
hands them to the modules that do the work (server, users, simulate, demo).

Nothing imports this module. Errors meant for a person are `UserError`s
(kubemonitor/errors.py): printed as one line, exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .apiclients import ClientStore
from .collectors import SOURCES
from .config import SETTINGS, Config, check_log_dir, parse_duration
from .errors import UserError
from .users import UserInputError, UserStore, validate_email, validate_username

if TYPE_CHECKING:  # for the annotations only: the commands import what they run when they run
    from .apiclients import ApiClient
    from .ratecard import RateCard
    from .services import Services
    from .users import User


class UsageError(UserError):
    """The command line itself is wrong."""


# ------------------------------------------------------------------ shared pieces
class Parser(argparse.ArgumentParser):
    """Usage errors are one line and the way to the help: the full usage of a command
    with every setting's flag is 30 lines that hide the one that matters."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}; see `{self.prog} --help`\n")


def add_setting_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """The settings table's flags (all, or the fields named in `only`)."""
    group = parser.add_argument_group("settings (each overrides its environment variable)")
    for s in SETTINGS:
        if only is not None and s.field not in only:
            continue
        default = "unset" if s.default is None else repr(s.default)
        group.add_argument(s.flag, dest=s.field, metavar="VALUE", default=None,
                           help=f"{s.help} [{s.env}, default {default}]")


def add_scope_flags(parser: argparse.ArgumentParser, whom: str, everything: bool = False) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--namespaces", metavar="A,B", default=None,
                       help=f"the only namespaces {whom} sees, comma-separated (default: every namespace)")
    if everything:
        which.add_argument("--all-namespaces", action="store_true", help=f"{whom} sees every namespace again")
    billing = parser.add_mutually_exclusive_group()
    billing.add_argument("--billing", dest="billing", action="store_true", default=None,
                         help=f"{whom} may see billing statements (default: yes for every namespace, no for a list)")
    billing.add_argument("--no-billing", dest="billing", action="store_false", help=f"{whom} may not see statements")


def load_config(args: argparse.Namespace) -> Config:
    return Config.load(overrides={s.field: getattr(args, s.field, None) for s in SETTINGS})


def duration(text: str) -> float:
    """`10s`, `5m`, `24h`, `2d` or a number of seconds (an argparse type)."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def count(low: int, high: int) -> Callable[[str], int]:
    """A whole number from `low` to `high` (an argparse type): `--pods 100000000` is refused, not run."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low} to {high}")
        return value
    return parse


def bounded_duration(low: float, high: float, or_zero: bool = False) -> Callable[[str], float]:
    """A duration from `low` to `high` seconds, or 0 when `or_zero` (an argparse type)."""
    def parse(text: str) -> float:
        value = duration(text)
        if not (low <= value <= high or (or_zero and value == 0)):
            raise argparse.ArgumentTypeError(f"{text!r} is outside {low:g} s to {high:g} s"
                                             + (" (or 0: none)" if or_zero else ""))
        return value
    return parse


def _faults(parse: Callable[[str], frozenset[str]]) -> Callable[[str], frozenset[str]]:
    """`--faults duplicate,outage` (an argparse type): an unknown name is refused with the choices."""
    def checked(text: str) -> frozenset[str]:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return checked


def since(text: str) -> datetime:
    """`--since`: a duration back from now (24h, 7d) or a date or time (UTC), as a datetime."""
    from datetime import UTC, datetime, timedelta

    from .request import BadRequest, parse_time
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    except OverflowError:  # 9999999999999d: before year 1
        raise argparse.ArgumentTypeError(f"{text!r} reaches back before the year 1; give a shorter duration or a date") from None
    try:
        ns = parse_time("--since", text, end_of_day=False)
    except BadRequest:
        ns = None
    if ns is None:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a duration (24h, 7d) nor a date or time "
                                         "(2026-11-01, 2026-11-01T08:00:00Z; UTC unless it has an offset)")
    return datetime.fromtimestamp(ns / 1e9, UTC)


def read_password(from_stdin: bool, again: bool = True) -> str:
    """The new password: from stdin's first line, or prompted twice on the terminal."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise UserInputError("no password on standard input; pipe it in: echo \"$PASSWORD\" | kubemonitor … --password-stdin")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UserInputError("there is no terminal to ask for the password on; pipe it in instead: "
                             "echo \"$PASSWORD\" | kubemonitor … --password-stdin")
    try:
        first = getpass.getpass("Password: ")
        second = getpass.getpass("Password (again): ") if again else first
    except EOFError:
        print(file=sys.stderr)
        raise UserInputError("no password given (end of input); nothing was changed") from None
    if first != second:
        raise UserInputError("the two passwords differ; nothing was changed")
    return first


def _own_file(path: str, default: str) -> str:
    """The users and clients files default to conf/ under the working directory (the
    operator's folder, beside nothing of the package's): made on first use, owner only.
    A path the operator named must have its folder already (a typo is not created)."""
    if path == default:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    return path


def user_store(args: argparse.Namespace) -> UserStore:
    return UserStore(_own_file(load_config(args).users_file, Config().users_file))


def audited(args: argparse.Namespace, action: str, target: str, **details: Any) -> None:
    """Leave the change's line in audit.log (with the OS user); a log directory this user
    cannot write is a warning, not a refusal: the change itself is already made."""
    from . import audit
    from .logs import setup_audit
    config = load_config(args)
    try:
        check_log_dir(config.log_dir)
        setup_audit(config.log_dir)
    except (UserError, OSError) as exc:
        print(f"kubemonitor: warning: not written to the audit log: {exc}", file=sys.stderr)
        return
    audit.cli_change(action, target, **details)


def scope_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """(namespaces, billing) from --namespaces/--all-namespaces and --billing/--no-billing; KEEP where not given."""
    from .access import KEEP, parse_namespaces
    namespaces = KEEP
    if getattr(args, "all_namespaces", False):
        namespaces = None
    elif args.namespaces is not None:
        namespaces = parse_namespaces(args.namespaces)
    return namespaces, KEEP if args.billing is None else args.billing


def _scope_text(entry: User | ApiClient) -> str:
    return entry.access.describe()


# ------------------------------------------------------------------ commands
def cmd_serve(args: argparse.Namespace) -> int:
    from .logs import setup_logging
    from .server import serve
    port = args.port
    if not (port.isdigit() and 1 <= int(port) <= 65535):
        raise UsageError(f"PORT {port!r} is not a port number; give 1-65535, e.g. kubemonitor serve 8000")
    config = load_config(args)
    check_log_dir(config.log_dir)
    UserStore(config.users_file).check_readable()
    ClientStore(config.api_clients_file).check_readable()
    setup_logging(config.log_dir)
    asyncio.run(serve(config, int(port)))
    return 0


def cmd_adduser(args: argparse.Namespace) -> int:
    from .access import KEEP
    store = user_store(args)
    validate_username(args.username)
    validate_email(args.email)
    namespaces, billing = scope_args(args)
    if store.read().get(args.username):
        raise UserInputError(f"user {args.username!r} already exists; use `kubemonitor passwd {args.username}`")
    user = store.add(args.username, args.email, read_password(args.password_stdin),
                     None if namespaces is KEEP else namespaces, None if billing is KEEP else billing)
    print(f"added user {args.username} to {store.path} ({_scope_text(user)})")
    audited(args, "adduser", args.username, scope=_scope_text(user))
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    store = user_store(args)
    if args.username not in store.read():
        raise UserInputError(f"no user {args.username!r}; `kubemonitor users` lists them")
    store.set_password(args.username, read_password(args.password_stdin))
    print(f"changed the password of {args.username}")
    audited(args, "passwd", args.username)
    return 0


def cmd_deluser(args: argparse.Namespace) -> int:
    user_store(args).delete(args.username)
    print(f"deleted user {args.username}")
    audited(args, "deluser", args.username)
    return 0


def change_scope(args: argparse.Namespace, store: UserStore | ClientStore, name: str, action: str) -> int:
    from .access import KEEP
    namespaces, billing = scope_args(args)
    if namespaces is KEEP and billing is KEEP:
        raise UsageError("say what to change: --namespaces a,b (or --all-namespaces) and/or --billing / --no-billing")
    entry = store.set_scope(name, namespaces, billing)
    print(f"{name}: {_scope_text(entry)}")
    audited(args, action, name, scope=_scope_text(entry))
    return 0


def cmd_scope(args: argparse.Namespace) -> int:
    return change_scope(args, user_store(args), args.username, "scope")


def cmd_users(args: argparse.Namespace) -> int:
    store = user_store(args)
    users = store.read()
    if not users:
        print(f"no users in {store.path}; add one with `kubemonitor adduser --username=NAME --email=ADDRESS`")
        return 0
    print("USERNAME\tEMAIL\tCREATED\tSCOPE")
    for user in sorted(users.values(), key=lambda u: u.username):
        print(f"{user.username}\t{user.email}\t{user.created}\t{_scope_text(user)}")
    return 0


def client_store(args: argparse.Namespace) -> ClientStore:
    return ClientStore(_own_file(load_config(args).api_clients_file, Config().api_clients_file))


def cmd_apiclient_add(args: argparse.Namespace) -> int:
    from .access import KEEP
    config = load_config(args)
    if config.api_username and args.name == config.api_username:
        raise UsageError(f"{args.name!r} is the server's API_USERNAME (the full-access client); choose another name")
    namespaces, billing = scope_args(args)
    store = client_store(args)
    client, secret = store.add(args.name, None if namespaces is KEEP else namespaces, None if billing is KEEP else billing)
    print(f"added API client {client.name} to {store.path} ({_scope_text(client)})", file=sys.stderr)
    print("its secret, shown this once (only its SHA-256 is kept):", file=sys.stderr)
    print(secret, flush=True)  # alone on stdout, so a script can capture it
    audited(args, "apiclient add", client.name, scope=_scope_text(client))
    return 0


def cmd_apiclient_list(args: argparse.Namespace) -> int:
    store = client_store(args)
    clients = store.read()
    if not clients:
        print(f"no API clients in {store.path}; add one with `kubemonitor apiclient add NAME`")
        return 0
    print("NAME\tCREATED\tSTATE\tSCOPE")
    for c in sorted(clients.values(), key=lambda c: c.name):
        state = f"revoked {c.revoked}" if c.revoked else "active"
        print(f"{c.name}\t{c.created}\t{state}\t{_scope_text(c)}")
    return 0


def cmd_apiclient_scope(args: argparse.Namespace) -> int:
    return change_scope(args, client_store(args), args.name, "apiclient scope")


def cmd_apiclient_revoke(args: argparse.Namespace) -> int:
    client = client_store(args).revoke(args.name)
    print(f"revoked API client {client.name}; it is refused from now on")
    audited(args, "apiclient revoke", client.name)
    return 0


def cmd_apiclient_rotate(args: argparse.Namespace) -> int:
    store = client_store(args)
    client, secret = store.rotate(args.name)
    print(f"gave API client {client.name} a new secret in {store.path}; the old one is refused from now on",
          file=sys.stderr)
    print("its new secret, shown this once (only its SHA-256 is kept):", file=sys.stderr)
    print(secret, flush=True)  # alone on stdout, so a script can capture it
    audited(args, "apiclient rotate", client.name)
    return 0


def cmd_apiclient_delete(args: argparse.Namespace) -> int:
    client = client_store(args).delete(args.name)
    print(f"deleted the revoked API client {client.name}; its name may be added again")
    audited(args, "apiclient delete", client.name)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    import json
    import os

    from . import audit
    config = load_config(args)
    if not os.path.isdir(config.log_dir):
        raise UserError(f"there is no log directory {config.log_dir} (KUBEMONITOR_LOG_DIR, --log-dir): "
                        "point it at the server's log directory")
    rows = list(audit.entries(config.log_dir, args.since, args.who))
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    elif rows:
        sys.stdout.write(audit.table(rows))
    else:
        where = audit.files(config.log_dir)
        print("no audit entries" + (" match" if where else f": there is no {audit.FILE} in {config.log_dir} "
                                    "(KUBEMONITOR_LOG_DIR)"), file=sys.stderr)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import signal

    from . import simulate
    config = load_config(args)
    try:
        cluster = simulate.Cluster(seed=args.seed, namespaces=args.namespaces, pods=args.pods, nodes=args.nodes,
                                   source=config.source)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    from .collectors import source_named
    step = args.step or source_named(config.source).write_interval
    simulate.run(config, cluster, args.backfill, step, args.interval, stop, faults=args.faults)
    return 0


def with_services(config: Config, work: Callable[[Services], Awaitable[int]], card: RateCard | None = None) -> int:
    """Run `await work(services)` against InfluxDB; its failures are one line."""
    import logging

    from .influx import InfluxError
    from .services import Services
    logging.getLogger("kubemonitor.influx").setLevel(logging.ERROR)  # the one-line error says it all

    async def run() -> int:
        services = Services(config, card=card)
        try:
            return await work(services)
        except InfluxError as exc:
            raise UserError(exc.message) from None
        finally:
            services.close()
    return asyncio.run(run())


def rollup_range(text_from: str, text_to: str | None, now_ns: int) -> tuple[int, int]:
    """The hours [first, end) that `--from`/`--to` name (inclusive days or times, UTC)."""
    from .request import BadRequest, parse_time
    from .times import HOUR_NS, MAX_DAYS, format_ns
    try:
        begin = parse_time("--from", text_from, end_of_day=False)
        end = parse_time("--to", text_to, end_of_day=True) if text_to else now_ns
    except BadRequest as exc:
        raise UsageError(str(exc).replace("'--from'", "--from").replace("'--to'", "--to")) from None
    if begin is None:
        raise UsageError("--from needs a date, e.g. --from 2026-11-01")
    if end is None:
        raise UsageError("--to needs a date, e.g. --to 2026-11-30")
    if begin > now_ns:
        raise UsageError(f"--from {text_from} is in the future (it is {format_ns(now_ns // 10**9 * 10**9)} now); "
                         "only hours that have passed can be rolled up")
    if begin > end:
        raise UsageError("--from is after --to; swap them")
    first, after = begin - begin % HOUR_NS, end - end % HOUR_NS + HOUR_NS
    if after - first > MAX_DAYS * 24 * HOUR_NS:
        raise UsageError(f"that is more than {MAX_DAYS} days; roll up a year at a time (one --from/--to per run)")
    return first, after


def cmd_rollup(args: argparse.Namespace) -> int:
    import time

    from .progress import Progress
    from .times import HOUR_NS, format_ns
    config = load_config(args)

    async def work(services: Services) -> int:
        rollups, writer = services.rollups, services.rollup_writer
        first, after = rollup_range(args.from_, args.to, time.time_ns())
        settled = writer.settled_end()
        if after > settled:
            print(f"kubemonitor: hours from {format_ns(max(first, settled))} on have not settled yet "
                  f"(KUBEMONITOR_ROLLUP_SETTLE); they are left to the server's task", file=sys.stderr)
            after = max(first, settled)
        await rollups.prepare()
        if rollups.state != "on":
            raise UserError(f"cannot keep rollups: {rollups.reason}")
        metrics = await writer.metrics()
        hours = (after - first) // HOUR_NS
        report = Progress("rollup", hours * len(metrics), "hours")
        action, target = ("rollup --rebuild" if args.rebuild else "rollup"), f"{format_ns(first)}..{format_ns(after)}"
        if args.rebuild:  # a rebuild changes kept figures: its start is on record even if it is killed
            audited(args, action, target, result="started", hours=hours, metrics=[m.name for m in metrics])
        done, expired = 0, []
        try:
            async for metric, hour, kept_as_it_was in writer.roll_up_range(metrics, first, after, args.rebuild):
                if kept_as_it_was:
                    expired.append(f"{metric.name} {format_ns(hour)}")
                done += 1
                report.update(done)
        except BaseException:
            if args.rebuild:
                audited(args, action, target, result="interrupted", done=f"{done} of {report.total} metric-hours")
            raise
        print(f"{'rebuilt' if args.rebuild else 'rolled up'} {hours} hour(s) x {len(metrics)} metric(s) "
              f"in {time.monotonic() - report.started:.1f} s", file=sys.stderr)
        if expired:
            print(f"kubemonitor: {len(expired)} metric-hour(s) kept as they were: their raw points have expired "
                  f"(InfluxDB's retention), and a rebuild needs them (first: {expired[0]})", file=sys.stderr)
        labels: list[str] = []
        if args.rebuild and len(expired) < report.total:
            labels = await services.kept.invalidate(first, after)
            if labels:
                print(f"kept statements of {', '.join(labels)} will be computed again, as a new revision", file=sys.stderr)
        audited(args, action, target, result="done" if args.rebuild else None, hours=hours,
                metrics=[m.name for m in metrics], kept_expired=len(expired) or None,
                statements=", ".join(labels) or None)
        return 0
    return with_services(config, work)


def cmd_statement(args: argparse.Namespace) -> int:
    """Print a period's statement (JSON, or CSV with --csv): for cron jobs that mail it."""
    import time

    from . import ratecard
    from .request import BadRequest
    from .statement import statement_request
    config = load_config(args)
    card = ratecard.load(config.billing_file, config.billing_file_named)
    body = {"period": args.period} if args.period else {"from": args.from_, "to": args.to}
    try:
        period, by, _ = statement_request({**body, "by": args.by}, card.timezone, time.time_ns())
    except BadRequest as exc:
        raise UsageError(str(exc).replace("'period'", "--period").replace("'from'", "--from")
                         .replace("'to'", "--to").replace("'by'", "--by")) from None

    async def work(services: Services) -> int:
        await services.rollups.prepare()
        statement = await services.billing.statement(period, by)
        sys.stdout.write(statement.csv(by) if args.csv else statement.text + "\n")
        return 0
    return with_services(config, work, card)


BY_CHOICES = ("group", "namespace", "pod")


def cmd_demo(args: argparse.Namespace) -> int:
    from .collectors import source_named
    from .demo import DemoOptions, run_demo
    # the collector's own default interval (the usage rule needs the collector's interval)
    sample_interval = args.sample_interval or source_named(args.source).write_interval
    run_demo(DemoOptions(port=args.port, address=args.address, backfill=args.backfill, interval=args.interval,
                         sample_interval=sample_interval, source=args.source,
                         namespaces=args.namespaces, pods=args.pods, seed=args.seed, password=args.password,
                         influxd=args.influxd, verbose=args.verbose, faults=args.faults))
    return 0


# ------------------------------------------------------------------ the parser
def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="kubemonitor", description="Kubernetes usage monitor and billing interface.")
    parser.add_argument("--version", action="version", version=f"kubemonitor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("serve", help="run the API and the web dashboard")
    p.add_argument("port", nargs="?", default="8000", metavar="PORT", help="port to listen on (default 8000)")
    add_setting_flags(p)
    p.set_defaults(func=cmd_serve)

    stdin_help = "read the password from the first line of standard input (for scripts)"
    users_flags = ("users_file", "log_dir")
    p = sub.add_parser("adduser", help="add a web user (password prompted twice)")
    p.add_argument("--username", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--password-stdin", action="store_true", help=stdin_help)
    add_scope_flags(p, "the user")
    add_setting_flags(p, only=users_flags)
    p.set_defaults(func=cmd_adduser)

    p = sub.add_parser("passwd", help="change a web user's password")
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true", help=stdin_help)
    add_setting_flags(p, only=users_flags)
    p.set_defaults(func=cmd_passwd)

    p = sub.add_parser("deluser", help="delete a web user")
    p.add_argument("username")
    add_setting_flags(p, only=users_flags)
    p.set_defaults(func=cmd_deluser)

    p = sub.add_parser("scope", help="change which namespaces a web user sees, and whether statements",
                       description="Change a web user's scope; open pages and live views follow within seconds.")
    p.add_argument("username")
    add_scope_flags(p, "the user", everything=True)
    add_setting_flags(p, only=users_flags)
    p.set_defaults(func=cmd_scope)

    p = sub.add_parser("users", help="list web users and their scopes")
    add_setting_flags(p, only=("users_file",))
    p.set_defaults(func=cmd_users)

    clients_flags = ("api_clients_file", "log_dir", "api_username")
    p = sub.add_parser("apiclient", help="add, list, scope, rotate, revoke or delete named API clients")
    client_sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    client_sub.required = True
    c = client_sub.add_parser("add", help="add a client and print its secret once")
    c.add_argument("name")
    add_scope_flags(c, "the client")
    add_setting_flags(c, only=clients_flags)
    c.set_defaults(func=cmd_apiclient_add)
    c = client_sub.add_parser("list", help="list clients, their scopes and whether they are revoked")
    add_setting_flags(c, only=clients_flags)
    c.set_defaults(func=cmd_apiclient_list)
    c = client_sub.add_parser("scope", help="change which namespaces a client sees, and whether statements")
    c.add_argument("name")
    add_scope_flags(c, "the client", everything=True)
    add_setting_flags(c, only=clients_flags)
    c.set_defaults(func=cmd_apiclient_scope)
    c = client_sub.add_parser("rotate", help="give a client a new secret (printed once); the old one is refused at once")
    c.add_argument("name")
    add_setting_flags(c, only=clients_flags)
    c.set_defaults(func=cmd_apiclient_rotate)
    c = client_sub.add_parser("revoke", help="refuse a client from now on")
    c.add_argument("name")
    add_setting_flags(c, only=clients_flags)
    c.set_defaults(func=cmd_apiclient_revoke)
    c = client_sub.add_parser("delete", help="remove a revoked client from the file (its name is free again)")
    c.add_argument("name")
    add_setting_flags(c, only=clients_flags)
    c.set_defaults(func=cmd_apiclient_delete)

    p = sub.add_parser("audit", help="print the audit log (logins, API calls, changes to access) as a table")
    p.add_argument("--since", type=since, default=None, metavar="WHEN",
                   help="only lines since WHEN: a duration back from now (24h, 7d) or a date or time (2026-11-01, UTC)")
    p.add_argument("--who", default=None, metavar="NAME", help="only lines by (or about) this user or client")
    p.add_argument("--json", action="store_true", help="the JSON lines themselves, not a table")
    add_setting_flags(p, only=("log_dir",))
    p.set_defaults(func=cmd_audit)

    from .simulate import __doc__ as simulate_doc
    p = sub.add_parser("simulate", help="write a simulated cluster into InfluxDB (--source heapster: Heapster's schema, "
                                        "the default; --source telegraf: Telegraf's and the DCGM exporter's)",
                       description=simulate_doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backfill", type=bounded_duration(0, 400 * 86400), default=0.0, metavar="DURATION",
                   help="write this much history first, e.g. 24h (default: none)")
    p.add_argument("--step", type=bounded_duration(1, 3600), default=None, metavar="DURATION",
                   help="sample spacing of the backfill (default 60s, Heapster's resolution; 10s, Telegraf's "
                        "interval, with --source telegraf)")
    p.add_argument("--interval", type=bounded_duration(0.5, 3600, or_zero=True), default=0.0, metavar="DURATION",
                   help="then keep writing a live sample this often until stopped, e.g. 10s (default: stop)")
    p.add_argument("--namespaces", type=count(1, 200), default=5, help="research groups (namespaces), default 5")
    p.add_argument("--pods", type=count(1, 5000), default=30, help="pods across the groups, default 30 (plus kube-system)")
    p.add_argument("--nodes", type=count(1, 500), default=4, help="nodes, default 4 (the last one has GPUs)")
    p.add_argument("--seed", type=int, default=1, help="seed of the cluster's shape and noise, default 1")
    from .faults import FAULTS, parse_faults
    p.add_argument("--faults", type=_faults(parse_faults), default=frozenset(), metavar="NAME,...",
                   help="collector faults written into the backfill: " + "; ".join(f"{k}: {v}" for k, v in FAULTS.items()))
    add_setting_flags(p)  # --source telegraf: Telegraf's schema (inputs.kubernetes, kube_inventory) and DCGM's
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("rollup", help="compute (or rebuild) hourly rollups for a range of days",
                       description="Roll up the hours from --from to --to (inclusive days or times, UTC) for every "
                                   "metric of KUBEMONITOR_ROLLUP_METRICS. Hours already rolled up are computed again "
                                   "and come out the same; --rebuild first deletes what was kept (late points).")
    p.add_argument("--from", dest="from_", required=True, metavar="DATE", help="first day (or time), e.g. 2026-11-01")
    p.add_argument("--to", default=None, metavar="DATE", help="last day (or time), inclusive (default: now)")
    p.add_argument("--rebuild", action="store_true", help="delete the kept hours first, then compute them again")
    add_setting_flags(p)
    p.set_defaults(func=cmd_rollup)

    p = sub.add_parser("statement", help="print a billing statement (JSON, or CSV with --csv)",
                       description="Print the statement of a month (--period 2026-11), a day (--period 2026-11-27) or "
                                   "of inclusive days (--from/--to), in the rate card's time zone.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--period", metavar="PERIOD", help="a month (2026-11) or a day (2026-11-27)")
    which.add_argument("--from", dest="from_", metavar="DAY", help="first day, with --to")
    p.add_argument("--to", metavar="DAY", help="last day, inclusive (with --from)")
    p.add_argument("--by", choices=BY_CHOICES, default="group", help="one row per group (default), namespace or pod")
    p.add_argument("--csv", action="store_true", help="CSV (RFC 4180) instead of JSON")
    add_setting_flags(p)
    p.set_defaults(func=cmd_statement)

    p = sub.add_parser("demo", help="run a complete demo: private InfluxDB, simulated cluster, server")
    p.add_argument("--port", type=int, default=8000, help="port of the web server (default 8000)")
    p.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--backfill", type=bounded_duration(0, 400 * 86400), default=86400.0, metavar="DURATION",
                   help="history to simulate first (default 24h)")
    p.add_argument("--interval", type=bounded_duration(0.5, 3600), default=10.0, metavar="DURATION",
                   help="how often the pages refresh (default 10s)")
    p.add_argument("--sample-interval", type=duration, default=None, metavar="DURATION",
                   help="how often the simulated collector samples, backfill and live (default 60s, Heapster's; "
                        "10s, Telegraf's, with --source telegraf)")
    p.add_argument("--source", choices=tuple(SOURCES), default="heapster",
                   help="the schema the simulated collector writes (default heapster; telegraf: Telegraf + DCGM)")
    p.add_argument("--namespaces", type=count(1, 200), default=5)
    p.add_argument("--pods", type=count(1, 5000), default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--faults", type=_faults(parse_faults), default=frozenset(), metavar="NAME,...",
                   help=f"collector faults in the simulated cluster, as `simulate --faults`: {', '.join(FAULTS)}")
    p.add_argument("--password", default=None, help="password of the demo web user (default: random, printed)")
    p.add_argument("--influxd", default=None, metavar="PATH", help="the influxd binary (default: found on PATH)")
    p.add_argument("--verbose", action="store_true", help="also print the server's log on the console")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except UserError as exc:
        print(f"kubemonitor: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
