"""Quanzu command line: run the service, the demo, the WeCom simulator, or manage the directory."""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvloop
from aiohttp import web

from bot.config import ConfigError, load_settings
from bot.directory import DirectoryError, load_directory_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bot.py", description="Quanzu (劝阻): anti-fraud alert instructions to WeCom")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the service")
    run.add_argument("--config", required=True, help="path to the TOML config (see config.example.toml)")

    demo = sub.add_parser("demo", help="run the bot and the WeCom simulator on the fictional demo district")
    demo.add_argument("--sim-host", default="127.0.0.1")
    demo.add_argument("--sim-port", type=int, default=8081)
    demo.add_argument("--history", action="store_true",
                      help="first fill an empty demo database with four weeks of synthetic instructions, so the "
                           "dashboard and bulletins have something to show")
    demo.add_argument("--fresh", action="store_true",
                      help="start from an empty demo database (delete data/demo.sqlite3 first), to replay the tour")

    sim = sub.add_parser("simulator", help="run the WeCom simulator alone",
                         description="A WeCom API simulator for tests, demos and benchmarks. It accepts exactly "
                                     "the credentials given here and sends signed, encrypted callbacks to "
                                     "--callback-url. Inspect what it received at /_sim/messages.")
    sim.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    sim.add_argument("--port", type=int, default=8081, help="listen port (default 8081)")
    sim.add_argument("--corp-id", default="wwdemo0000000001", help="the corp id (CorpID) it accepts")
    sim.add_argument("--corp-secret", default="demo-secret", help="the app secret it accepts")
    sim.add_argument("--agent-id", type=int, default=1000002, help="the app's AgentId")
    sim.add_argument("--token", default="QuanzuDemoToken", help="callback Token used to sign callbacks")
    sim.add_argument("--encoding-aes-key", default="QuanzuDemoEncodingAesKey0123456789abcdefgh0",
                     help="callback EncodingAESKey (43 characters) used to encrypt callbacks")
    sim.add_argument("--callback-url", default=None, help="the bot's callback URL, e.g. http://127.0.0.1:8080/wecom/callback")
    sim.add_argument("--directory", default=None,
                     help="a directory TOML (like demo/district.toml) whose people, app chats and robots the "
                          "simulated corp should have")

    directory = sub.add_parser("directory", help="check a directory file")
    directory_sub = directory.add_subparsers(dest="action", required=True)
    check = directory_sub.add_parser("check", help="validate a directory TOML file and summarise it")
    check.add_argument("path")

    wecom = sub.add_parser("wecom", help="set up and check the WeCom corp: credentials, app, chats, robots")
    wecom_sub = wecom.add_subparsers(dest="action", required=True)
    wecom_check = wecom_sub.add_parser("check", help="verify the WeCom set-up against the configured API; exit 1 "
                                                     "when something needs fixing (one Chinese line each)")
    wecom_check.add_argument("--config", required=True)
    create_chat = wecom_sub.add_parser("create-chat", help="create a station's app group chat through the app "
                                                           "(appchat/create) and print its chatid")
    create_chat.add_argument("station", nargs="?", help="station or group code; none: every app chat of the "
                                                        "directory that does not exist yet")
    create_chat.add_argument("--config", required=True)
    sync_chat = wecom_sub.add_parser("sync-chat", help="bring app chats' members in line with the directory "
                                                       "(appchat/update)")
    sync_chat.add_argument("station", nargs="?", help="station or group code; none: every app chat")
    sync_chat.add_argument("--config", required=True)

    outbox = sub.add_parser("outbox", help="the queue of WeCom messages")
    outbox_sub = outbox.add_subparsers(dest="action", required=True)
    outbox_retry = outbox_sub.add_parser("retry", help="make failed messages due again (audited, channel cli)")
    outbox_retry.add_argument("--config", required=True)
    which = outbox_retry.add_mutually_exclusive_group(required=True)
    which.add_argument("--instruction", type=int, metavar="N", help="the failed messages of instruction N")
    which.add_argument("--since", metavar="TIME", help="messages that failed since TIME (ISO 8601, Beijing time)")
    which.add_argument("--failed", action="store_true", help="every failed message")

    roster = sub.add_parser("roster", help="import or show the stations' duty rosters (值班表)")
    roster_sub = roster.add_subparsers(dest="action", required=True)
    roster_import = roster_sub.add_parser("import", help="import a roster CSV")
    roster_import.add_argument("csv", help="the CSV file, UTF-8 or GBK: 日期,派出所,班次,开始,结束,值班民警,带班领导")
    roster_import.add_argument("--config", required=True)
    roster_show = roster_sub.add_parser("show", help="who is on duty at each station now")
    roster_show.add_argument("--config", required=True)
    roster_show.add_argument("--json", action="store_true", help="print JSON")
    campaign = sub.add_parser("campaign", help="awareness campaigns: list, preview (a dry run) or run one now")
    campaign.add_argument("action", choices=["list", "preview", "run"])
    campaign.add_argument("name", nargs="?", help="the campaign (for preview and run)")
    campaign.add_argument("--config", required=True, help="path to the TOML config")
    backup = sub.add_parser("backup", help="copy the database while the bot runs, or restore a copy",
                            description="Consistent online copy of the SQLite database (SQLite's backup API), "
                                        "checked with integrity_check; --restore writes a copy back (bot stopped).")
    backup.add_argument("--config", required=True, help="path to the TOML config (its [database] path is used)")
    backup.add_argument("--restore", action="store_true", help="restore PATH into the configured database")
    backup.add_argument("path", help="the backup file to write (must not exist), or with --restore to read")

    db = sub.add_parser("db", help="database utilities")
    db_sub = db.add_subparsers(dest="action", required=True)
    to_postgres = db_sub.add_parser(
        "copy-to-postgres", help="copy the SQLite database into an empty PostgreSQL database",
        description="Copies every table of the configured SQLite database into PostgreSQL (migrated first) in one "
                    "transaction, then compares row counts and a sample of rows; exit 0 only when they agree. "
                    "Refuses a target that already holds instructions or outbox messages; what a Quanzu start "
                    "left there (meta, the directory) is replaced.")
    to_postgres.add_argument("--config", required=True, help="path to the TOML config (its [database] path is read)")
    to_postgres.add_argument("--to", required=True, metavar="URL", help="e.g. postgresql://user@host:5432/quanzu")

    dashboard = sub.add_parser("dashboard", help="dashboard utilities")
    dashboard_sub = dashboard.add_subparsers(dest="action", required=True)
    dashboard_sub.add_parser("hash-password", help="read a password (twice, or once from a pipe) and print the "
                                                   "line for [dashboard] admin_password_hash")

    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run(args.config)
        if args.command == "demo":
            from bot.demo import forget_demo, run_demo

            if args.fresh:
                forget_demo()
            asyncio.run(run_demo(args.sim_host, args.sim_port, history=args.history))
            return 0
        if args.command == "simulator":
            return _simulator(args)
        if args.command == "dashboard":
            return _hash_password()
        if args.command == "directory":
            return _directory_check(args.path)
        if args.command == "wecom":
            from bot.wecom import cli as wecom_cli

            if args.action == "check":
                return asyncio.run(wecom_cli.check(args.config))
            if args.action == "create-chat":
                return asyncio.run(wecom_cli.create(args.config, args.station))
            return asyncio.run(wecom_cli.sync(args.config, args.station))
        if args.command == "outbox":
            from bot.outbox_cli import RetryArgumentError, retry

            try:
                return asyncio.run(retry(args.config, args.instruction, args.since))
            except RetryArgumentError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
        if args.command == "roster":
            from bot import roster_cli

            if args.action == "import":
                return asyncio.run(roster_cli.import_file(args.config, Path(args.csv).read_bytes(), args.csv))
            return asyncio.run(roster_cli.show(args.config, args.json))
        if args.command == "campaign":
            from bot.awareness.cli import main as campaign_main

            return campaign_main(args.action, args.name, args.config)
        if args.command == "backup":
            from bot.backup import run_backup_command

            return run_backup_command(load_settings(args.config), args.path, args.restore)
        if args.command == "db":
            return _copy_to_postgres(load_settings(args.config).database.path, args.to)
    except (ConfigError, DirectoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 1


def _run(config_path: str) -> int:
    from bot import server
    from bot.app import create_app
    from bot.logs import setup_logging

    settings = load_settings(config_path)
    load_directory_file(settings.directory.path)  # refuse to start on a broken directory
    setup_logging(settings.logging.level, settings.logging.format)
    # libuv's loop: the same asyncio, a fraction of its overhead per callback, socket read and timer —
    # which is most of what the bot does between two SQL statements (README, Benchmarks).
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = create_app(settings)
    app.on_startup.append(_freeze_what_start_up_built)  # after the services started
    server.run(app, settings.server)
    return 0


async def _freeze_what_start_up_built(app: web.Application) -> None:
    """What start-up built lives as long as the process: out of the collector's sight, a full
    collection (tens of milliseconds otherwise, while every request waits) scans only what came since."""
    gc.freeze()


def _simulator(args: argparse.Namespace) -> int:
    from bot.demo import seed_simulator
    from bot.logs import setup_logging
    from wecom_sim import Simulator, SimulatorConfig, create_simulator_app

    setup_logging("INFO", "text")
    try:
        config = SimulatorConfig(corp_id=args.corp_id, corp_secret=args.corp_secret, agent_id=args.agent_id,
                                 token=args.token, encoding_aes_key=args.encoding_aes_key,
                                 callback_url=args.callback_url)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    sim = Simulator(config)
    if args.directory:
        try:
            seed_simulator(sim, load_directory_file(args.directory))
        except ValueError as err:  # what WeCom itself would refuse, e.g. an app chat of one member
            raise ConfigError(f"{args.directory}: {err}") from err
    print(f"WeCom simulator on http://{args.host}:{args.port}/cgi-bin/ (inspect: /_sim/messages)", flush=True)
    app = create_simulator_app(sim)
    app.cleanup_ctx.append(_keep_collections_short)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)
    return 0


async def _keep_collections_short(app: web.Application) -> AsyncIterator[None]:
    """The simulator keeps every message it is sent. A full garbage collection re-scans all of them
    (100-500 ms pauses after a few thousand), time a benchmark would charge to whatever it measures;
    frozen objects are skipped (and still freed when nothing refers to them)."""
    async def freeze() -> None:
        while True:
            await asyncio.sleep(2.0)
            gc.freeze()

    task = asyncio.create_task(freeze())
    yield
    task.cancel()


def _hash_password() -> int:
    import getpass

    from handlers.dashboard.session import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("error: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 10:
        print("error: use at least 10 characters", file=sys.stderr)
        return 2
    print(f'admin_password_hash = "{hash_password(password)}"')
    return 0


def _copy_to_postgres(sqlite_path: Path, url: str) -> int:
    from storage.transfer import TransferError, copy_sqlite_to_postgres

    print(f"复制 {sqlite_path} 到 PostgreSQL …", flush=True)
    try:
        report = asyncio.run(copy_sqlite_to_postgres(
            sqlite_path, url, on_table=lambda table, rows: print(f"  {table}：{rows} 行", flush=True)))
    except TransferError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0 if report.verified else 1


def _directory_check(path: str) -> int:
    d = load_directory_file(path)
    print(f"{d.center_name}: {len(d.stations)} stations, {len(d.grids)} grids, {len(d.people)} people, "
          f"{len(d.groups)} groups; fallback group {d.fallback_group or '(none)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
