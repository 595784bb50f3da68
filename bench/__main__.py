"""`make bench` (`python -m bench`): run every benchmark and print its figures.

1. Token refresh policies, simulated (node, fake time, our real token keeper module): GenerateToken
   and token API calls per viewer-hour, expiry screens, an outage. bench/token_policies.mjs.
2. The token API over real HTTP: the portal and the built-in emulator on free ports, concurrent
   `POST /api/reports/{id}/token` calls. bench/http_tokens.py.
3. The capacity's bill over a simulated week (simulated time, the real ledger, capacity control and
   controller against a simulated ARM): billed capacity-hours, estimated cost, off and starting
   screens for always on, Power Embedded's rule and ours. bench/capacity_week.py.
4. Load: the token API (cache hits and misses, 64 and 256 callers; 1 worker, N workers, two
   instances) and open viewers on the push channel, against real `embedportal serve` processes
   and the emulator's own process, beside a bare FastAPI endpoint signing a JWT (the anchor) in
   the same run. bench/load.py. `--only load` runs it alone.

Exit status 0 whenever the benchmarks ran; nothing here asserts a timing. bench/README.md explains
the model and every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
POLICY_SCRIPT = ROOT / "bench" / "token_policies.mjs"

# Flags passed through to token_policies.mjs: (python flag, node flag, type, default).
SIMULATION_FLAGS: list[tuple[str, str, type, Any]] = [
    ("--viewers", "--viewers", int, 200),
    ("--hours", "--hours", float, 24),
    ("--start-hour", "--start-hour", float, 0),
    ("--keys", "--keys", int, 10),
    ("--seed", "--seed", int, 1),
    ("--outage-viewers", "--outage-viewers", int, 60),
    ("--outage-start-hour", "--outage-start-hour", float, 8),
    ("--outage-hours", "--outage-hours", float, 8),
    ("--outage-at-hour", "--outage-at-hour", float, 12),
    ("--outage-minutes", "--outage-minutes", float, 90),
]
GROUPS = ["tv", "office", "laptop", "clock +3h", "clock -3h"]
# Part 3's flags: (flag, CapacityWeekParams field, type, default, help).
CAPACITY_FLAGS: list[tuple[str, str, type, Any, str]] = [
    ("--capacity-days", "days", int, 7, "simulated days from a Monday"),
    ("--capacity-seed", "seed", int, 1, "seed of the organization's week"),
    ("--idle-minutes", "idle_minutes", int, 30, '"Pause the capacity after" (minutes)'),
    ("--capacity-office-users", "office_users", int, 40, "office users"),
    ("--capacity-tvs", "tvs", int, 3, "wall TVs without 'keeps on'"),
    ("--capacity-heartbeat-minutes", "heartbeat_minutes", float, 5.0,
     "minutes between an open viewer's heartbeats"),
    ("--capacity-forgotten-tabs", "forgotten_tab_probability", float, 0.0,
     "chance a desk user leaves the tab open overnight, per day"),
    ("--capacity-transition-seconds", "transition_seconds", float, 60.0,
     "seconds an ARM resume or suspend takes"),
    ("--capacity-step-seconds", "step_seconds", float, 30.0, "the people's time step (s)"),
    ("--capacity-controller-seconds", "controller_seconds", float, 0.0,
     "controller pass interval; 0: whenever its answer can change"),
]  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sim = parser.add_argument_group("policy simulation (bench/token_policies.mjs)")
    for flag, _node, kind, default in SIMULATION_FLAGS:
        sim.add_argument(flag, type=kind, default=default, help=f"default {default}")
    sim.add_argument("--policies", default="ours,microsoft,interaction,superset")
    sim.add_argument("--no-outage", action="store_true", help="skip the outage scenario")
    sim.add_argument("--skip-policies", action="store_true", help="skip the policy simulation")
    http = parser.add_argument_group("token API over HTTP (bench/http_tokens.py)")
    http.add_argument("--http-requests", type=int, default=400, help="token API calls per round")
    http.add_argument("--http-concurrency", type=int, default=8, help="calls in flight at once")
    http.add_argument(
        "--http-probe",
        type=int,
        default=48,
        help="calls sent all at once after the other phases, 5 s timeout (0: skip)",
    )
    http.add_argument("--skip-http", action="store_true", help="skip the HTTP benchmark")
    capacity = parser.add_argument_group("capacity week (bench/capacity_week.py)")
    for flag, _field, kind, default, text in CAPACITY_FLAGS:
        capacity.add_argument(flag, type=kind, default=default, help=f"{text} (default {default})")
    capacity.add_argument(
        "--capacity-no-schedule", action="store_true", help='skip the "ours + schedule" policy'
    )
    capacity.add_argument("--skip-capacity", action="store_true", help="skip the capacity week")
    load = parser.add_argument_group("load: token API and open viewers (bench/load.py)")
    load.add_argument(
        "--load-concurrency", type=_ints, default=(64, 256), help="callers, comma-separated"
    )
    load.add_argument(
        "--load-duration", type=float, default=5.0, help="seconds of cache hits per run"
    )
    load.add_argument(
        "--load-miss-viewers",
        type=int,
        default=256,
        help="signed-in viewers with their own RLS identity; each asks once per miss run",
    )
    load.add_argument(
        "--load-viewers",
        type=_ints,
        default=(1000, 10000),
        help="open push streams to hold, comma-separated (0: skip)",
    )
    load.add_argument(
        "--load-viewers-seconds",
        type=float,
        default=90.0,
        help="most seconds spent opening the streams of each count",
    )
    load.add_argument(
        "--load-workers", type=int, default=0, help="N of `serve --workers N` (0: cores)"
    )
    load.add_argument(
        "--load-database-url",
        default=os.environ.get("EMBEDPORTAL_BENCH_DATABASE_URL"),
        help="PostgreSQL server to create a temporary database on (default "
        "$EMBEDPORTAL_BENCH_DATABASE_URL; unset: a temporary SQLite file)",
    )
    load.add_argument(
        "--load-redis-url",
        default=os.environ.get("EMBEDPORTAL_BENCH_REDIS_URL"),
        help="Redis for the token cache and push (default $EMBEDPORTAL_BENCH_REDIS_URL); "
        "with the database URL it enables the two-instance run",
    )
    load.add_argument("--load-skip-fleet", action="store_true", help="skip the two instances")
    load.add_argument("--skip-load", action="store_true", help="skip the load part")
    parser.add_argument(
        "--only",
        choices=PARTS,
        help="run this part alone (the --skip-* flags are then ignored)",
    )
    parser.add_argument("--json-out", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)
    if args.only is not None:
        for part in PARTS:
            setattr(args, f"skip_{part}", part != args.only)
    return args


PARTS = ("policies", "http", "capacity", "load")


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of numbers: {text!r}"
        ) from None
    if any(value < 0 for value in values):
        raise argparse.ArgumentTypeError(f"negative number in {text!r}")
    return tuple(value for value in values if value > 0)


# --- part 1: the policy simulation ---------------------------------------------------------------


def run_policy_simulation(args: argparse.Namespace) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("bench: node is needed for the policy simulation (see README)")
    command = [node, str(POLICY_SCRIPT), "--json", "--policies", args.policies]
    for flag, node_flag, _kind, _default in SIMULATION_FLAGS:
        command += [node_flag, str(getattr(args, flag.lstrip("-").replace("-", "_")))]
    if args.no_outage:
        command.append("--no-outage")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"bench: {POLICY_SCRIPT.name} failed (exit {done.returncode})")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None, ours_value: float) -> str:
    if value is None:
        return "n/a*" if ours_value == 0 else "-"
    return f"{value:.2f}x"


def _table(*columns: str) -> Table:
    table = Table(box=box.ASCII2, show_edge=True, pad_edge=True, highlight=False)
    for n, column in enumerate(columns):
        if n == 0:
            table.add_column(column, justify="left", no_wrap=True)
        else:
            table.add_column(column, justify="right", overflow="fold")
    return table


def print_policies(console: Console, main: dict[str, Any]) -> None:
    policies = main["policies"]
    ours = next(p for p in policies if p["name"] == "ours")
    groups = ", ".join(f"{g['viewers']} {name}" for name, g in sorted(main["viewerGroups"].items()))
    console.print(
        f"[bold]Token refresh policies[/bold]: {main['viewers']} viewers ({groups}), "
        f"{main['hours']:g} simulated hours from {main['startHour']:g}:00, "
        f"{main['keys']} (report, identity) keys, {main['viewerHours']:,} viewer-hours "
        "(page open on a running machine), 60-minute tokens"
    )
    cost = _table(
        "policy",
        "GenerateToken\n/viewer-h",
        "GenerateToken\nx ours",
        "GenerateToken per\n(report, identity)\nper lifetime",
        "token API calls\n/viewer-h",
        "API calls\nx ours",
        "API calls /viewer-h\n(correct clocks)",
    )
    for p in policies:
        cost.add_row(
            p["label"],
            _num(p["generateTokenPerViewerHour"], 3),
            _ratio(p["vsOurs"]["generateToken"], ours["generateTokenCalls"]),
            _num(p["generateTokenPerKeyLifetime"], 2),
            _num(p["tokenApiCallsPerViewerHour"], 2),
            _ratio(p["vsOurs"]["tokenApiCalls"], ours["tokenApiCalls"]),
            _num(p["tokenApiCallsPerViewerHourCorrectClocks"], 2),
        )
    console.print(cost)

    screens = _table(
        "policy",
        "expiry\nscreens",
        "per 1000\nviewer-h",
        "screens\nx ours",
        "viewers\nhit",
        "minutes\non screen",
        "human\nreloads",
        *GROUPS,
    )
    for p in policies:
        by_group = p["screensByGroup"]
        screens.add_row(
            p["label"],
            f"{p['expiryScreens']:,}",
            _num(p["expiryScreensPer1000ViewerHours"], 1),
            "-" if p is ours else _ratio(p["vsOurs"]["expiryScreens"], ours["expiryScreens"]),
            str(p["viewersWithScreens"]),
            _num(p["minutesOnExpiryScreens"], 0),
            str(p["humanReloads"]),
            *(str(by_group.get(g, 0)) for g in GROUPS),
        )
    console.print(screens)
    if ours["expiryScreens"] == 0:
        console.print("  * n/a: ours has no expiry screens, so there is no ratio.")

    per_lifetime = ours["generateTokenPerKeyLifetime"]
    console.print(
        f"Ours: GenerateToken per (report, identity) per token lifetime = {per_lifetime:.2f} "
        f"(target <= 1: {'met' if per_lifetime <= 1 else 'NOT met'}); "
        f"expiry screens = {ours['expiryScreens']}."
    )
    console.print(
        "  Under continuous demand a key costs between 60/50 = 1.20 (every refresh at the "
        "10-minute margin) and "
        f"60/49 = {main['continuousDemandFloor']:.2f} (a mint as soon as the shared token is "
        "under the margin + 1 minute share threshold) GenerateToken calls per lifetime: each "
        "token serves about lifetime - margin, so <= 1 needs a smaller margin."
    )
    console.print(
        "  Ours, token API calls by reason: "
        + _counts(ours["tokenApiCallsByReason"])
        + "; GenerateToken triggered by: "
        + _counts(ours["generateTokenByReason"])
    )
    overlay = ours.get("keeperOverlay") or {}
    if overlay.get("appearances"):
        mean = overlay["seenSeconds"] / overlay["appearances"]
        console.print(
            f"  Ours, own overlay while recovering after a wake-up: {overlay['appearances']} "
            f"times, {mean:.1f} s on average, {overlay['longestSeconds']:.1f} s at most "
            "(token died during sleep; no click or query hit the dead token)."
        )
    for p in policies:
        if p["name"] != "ours":
            console.print(
                f"  {p['label']}: screens by cause {_counts(p['screensByCause'])}; "
                f"API calls by reason {_counts(p['tokenApiCallsByReason'])}"
            )


def print_outage(console: Console, outage: dict[str, Any]) -> None:
    end_hour = outage["outageFromHour"] + outage["outageMinutes"] / 60
    console.print(
        f"\n[bold]Outage[/bold]: {outage['viewers']} viewers, {outage['hours']:g} h from "
        f"{outage['fromHour']:g}:00 ({outage['viewerHours']:,} viewer-hours); every token API "
        f"call fails (503) from {_clock(outage['outageFromHour'])} to {_clock(end_hour)}"
    )
    table = _table(
        "policy",
        "screens\nin outage",
        "in 5 min\nafter",
        "other\nscreens",
        "viewers\nhit",
        "recovered,\nno human",
        "fixed by\nhuman",
        "human\nreloads",
        "asleep\nat end",
        "never\nrecovered",
        "self-recovery s\nmedian / max",
    )
    for p in outage["policies"]:
        lag = p["selfRecoverySecondsAfterOutage"]
        table.add_row(
            p["label"],
            str(p["screensDuringOutage"]),
            str(p["screensInFiveMinutesAfter"]),
            str(p["screensOtherwise"]),
            str(p["viewersHit"]),
            str(p["recoveredWithoutHumanReload"]),
            str(p["fixedByHumanReload"]),
            str(p["humanReloads"]),
            str(p["asleepAtEndStillBroken"]),
            str(p["unresolvedAtEndOrClose"]),
            "-" if lag is None else f"{lag['median']:.0f} / {lag['max']:.0f}",
        )
    console.print(table)
    console.print(
        "  Self-recovery is timed from the later of the outage's end and the machine's last "
        "wake-up. 'Asleep at the end': a laptop that went to sleep broken and was still asleep "
        "when the window ended (it recovers on waking); 'never recovered': still broken and "
        "awake at the end, or the page was closed broken."
    )


def _clock(hour: float) -> str:
    minutes = round(hour * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _counts(counts: dict[str, int]) -> str:
    ordered = sorted(counts.items(), key=lambda item: -item[1])
    return ", ".join(f"{name} {n:,}" for name, n in ordered) or "none"


# --- entry point ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=150, highlight=False, soft_wrap=False)
    started = time.perf_counter()
    figures: dict[str, Any] = {}

    if not args.skip_policies:
        console.rule("Part 1: token refresh policies (simulated day, real token keeper)")
        simulation = run_policy_simulation(args)
        figures["policies"] = simulation
        print_policies(console, simulation["main"])
        if simulation.get("outage"):
            print_outage(console, simulation["outage"])
        console.print(f"  (simulation: {simulation['runtimeMs'] / 1000:.1f} s)")

    if not args.skip_http:
        from bench import http_tokens

        console.rule("Part 2: token API over HTTP (portal + built-in emulator)")
        figures["http"] = http_tokens.run(
            console,
            requests=args.http_requests,
            concurrency=args.http_concurrency,
            probe=args.http_probe,
        )

    if not args.skip_capacity:
        from bench import capacity_week

        console.rule("Part 3: the capacity's bill over a simulated week (real controller)")
        params = capacity_week.CapacityWeekParams(
            **{
                name: getattr(args, flag[2:].replace("-", "_")) for flag, name, *_ in CAPACITY_FLAGS
            },
            schedule=not args.capacity_no_schedule,
        )
        figures["capacity"] = capacity_week.run(console, params)

    if not args.skip_load:
        from bench import load

        console.rule("Part 4: load (real server processes, the anchor beside them)")
        figures["load"] = load.run(
            console,
            load.LoadParams(
                concurrency=args.load_concurrency,
                duration_seconds=args.load_duration,
                miss_viewers=args.load_miss_viewers,
                viewers=args.load_viewers,
                viewers_seconds=args.load_viewers_seconds,
                workers=args.load_workers,
                database_url=args.load_database_url,
                redis_url=args.load_redis_url,
                skip_viewers=not args.load_viewers,
                skip_fleet=args.load_skip_fleet,
            ),
        )

    elapsed = time.perf_counter() - started
    figures["runtimeSeconds"] = round(elapsed, 2)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    console.print(f"\nbench finished in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
