"""python -m dead_letter_admin: list, show, replay, repair and discard the orders' kept dead letters.

Every command calls the orders API (/api/dead-letters) with an operator's token (app role Orders.Admin).
Against the local system (scripts/run) the development operator signs in by itself.

  list      the kept dead letters, filtered (--json for scripts)
  show      one dead letter: body, properties, its order's status, what operators did with it
  replay    give a Failed order a new attempt: one id, or every Kept dead letter matching a filter
            (--dry-run first; --yes to go; paced by --rate so the queue is never flooded)
  repair    replay with a corrected order (a JSON file, validated as POST /api/orders validates a body)
  discard   keep the record but never retry it

Examples:
  python -m dead_letter_admin list --reason MaxDeliveryCountExceeded --since 2026-12-01T08:00:00Z
  python -m dead_letter_admin replay --reason MaxDeliveryCountExceeded --since 2026-12-01T08:00:00Z --dry-run
  python -m dead_letter_admin replay --reason MaxDeliveryCountExceeded --since 2026-12-01T08:00:00Z --yes \\
      --why "SQL outage 08:10-08:40 is over"
  python -m dead_letter_admin repair 42 --order fixed.json --why "SKU corrected with the customer"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dead_letter_admin.api import ApiError, DeadLetterApi
from dead_letter_admin.tokens import LOCAL_OPERATOR, token_source

DEFAULT_API_URL = "http://127.0.0.1:7071/api"
DEFAULT_RATE = 20.0
MAX_RATE = 500.0
IN_FLIGHT = 8  # replays under way at once in bulk (each answers within tens of milliseconds)


def main(argv: Sequence[str] | None = None, *, sleep: Callable[[float], None] = time.sleep) -> int:
    options = _parser().parse_args(argv)
    try:
        api = DeadLetterApi(options.api, token_source(
            api_url=options.api, token=options.token, dev_identity_url=options.dev_identity,
            dev_user=options.dev_user, scope=options.scope), sleep=sleep)
    except ApiError as error:
        return _fail(error)
    try:
        return int(options.run(api, options, sleep))
    except ApiError as error:
        return _fail(error)
    finally:
        api.close()


def _fail(error: Exception) -> int:
    print(f"error: {error}", file=sys.stderr)
    return 1


# ----- commands ---------------------------------------------------------------------------------------------
def list_command(api: DeadLetterApi, options: argparse.Namespace, sleep: Callable[[float], None]) -> int:
    found = list(api.list(_filters(options)))
    if options.json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print("no dead letters match")
        return 0
    print(f"{'id':>6}  {'state':<9}  {'dead-lettered at':<24}  {'reason':<26}  {'customer':<16}  {'try':>3}  correlationId")
    for item in found:
        print(f"{item['id']:>6}  {item['state']:<9}  {item['deadLetteredAt']:<24}  {str(item['reason'])[:26]:<26}  "
              f"{str(item['customerId'])[:16]:<16}  {item['attempt']:>3}  {item['correlationId'] or '-'}")
    print(f"{len(found)} dead letter(s)")
    return 0


def show_command(api: DeadLetterApi, options: argparse.Namespace, sleep: Callable[[float], None]) -> int:
    detail = api.show(options.id)
    if options.json:
        print(json.dumps(detail, indent=2))
        return 0
    order = detail["order"]
    print(f"dead letter {detail['id']}: {detail['state']}"
          + (f" (replayed as attempt {detail['replayAttempt']})" if detail["replayAttempt"] else ""))
    for label, key in (("reason", "reason"), ("description", "description"), ("correlationId", "correlationId"),
                       ("customer", "customerId"), ("attempt", "attempt"), ("deliveries", "deliveryCount"),
                       ("enqueued at", "enqueuedAt"), ("dead-lettered at", "deadLetteredAt"),
                       ("message id", "messageId"), ("sequence number", "sequenceNumber")):
        print(f"  {label:<17} {detail[key]}")
    print(f"  {'order':<17} " + ("none recorded" if order is None else
                                 f"{order['status']} (attempt {order['attempt']}) {order['reason'] or ''}".rstrip()))
    print(f"  body ({detail['bodyEncoding']}):\n    {detail['body']}")
    print(f"  application properties: {json.dumps(detail['applicationProperties'])}")
    print(f"  message properties:     {json.dumps(detail['messageProperties'])}")
    for action in detail["actions"]:
        print(f"  {action['at']}  {action['kind']:<8} by {action['actor']}: {action['why']}"
              + (f" (attempt {action['attempt']})" if action["attempt"] else ""))
    return 0


def replay_command(api: DeadLetterApi, options: argparse.Namespace, sleep: Callable[[float], None]) -> int:
    if options.id is not None:
        if options.dry_run:
            return show_command(api, argparse.Namespace(id=options.id, json=False), sleep)
        _require_why(options)
        return _print_replayed(api.replay(options.id, options.why))
    filters = {**_filters(options), "state": "Kept"}
    if len(filters) == 1:
        raise ApiError("say which dead letters to replay: an id, or filters (--reason, --since, --until, "
                       "--customer, --correlation-id)")
    selected = list(api.list(filters))
    if options.dry_run or not selected:
        for item in selected:
            print(f"would replay {item['id']:>6}  {item['reason']}  {item['customerId']}  {item['correlationId']}")
        print(f"{len(selected)} Kept dead letter(s) match; nothing was replayed"
              + (". Run the same command with --yes and --why to replay them" if selected else ""))
        return 0
    if not options.yes:
        raise ApiError(f"{len(selected)} dead letters match: check them with --dry-run, then run again with --yes")
    _require_why(options)
    return _replay_all(api, selected, options.why, options.rate, sleep)


def repair_command(api: DeadLetterApi, options: argparse.Namespace, sleep: Callable[[float], None]) -> int:
    _require_why(options)
    source = sys.stdin.read() if options.order == "-" else Path(options.order).read_text(encoding="utf-8")
    try:
        order = json.loads(source)
    except ValueError as error:
        raise ApiError(f"the order in {options.order} is not JSON ({error}); give the corrected order as "
                       '{"customerId": ..., "currency": ..., "items": [{"sku": ..., "quantity": ...}]}') from None
    return _print_replayed(api.repair(options.id, options.why, order))


def discard_command(api: DeadLetterApi, options: argparse.Namespace, sleep: Callable[[float], None]) -> int:
    _require_why(options)
    discarded = api.discard(options.id, options.why)
    print(f"dead letter {discarded['id']} is {discarded['state']}; its order keeps its status")
    return 0


# ----- bulk replay ------------------------------------------------------------------------------------------
def _replay_all(api: DeadLetterApi, selected: list[dict[str, Any]], why: str, rate: float,
                sleep: Callable[[float], None]) -> int:
    """Start one replay every 1/rate seconds, at most ``IN_FLIGHT`` at a time: the queue and the processor
    get a steady trickle, never a flood, and a slow answer does not slow the pace below ``rate`` while
    fewer than ``IN_FLIGHT`` are under way. When all of them are waiting (the system stalled), the next
    starts once one answers and the pace goes on from then: replays held up are not sent in a burst."""
    outcomes: Counter[str] = Counter()
    refusals: Counter[str] = Counter()
    stop: list[ApiError] = []
    lock = threading.Lock()
    started = time.monotonic()

    slots = threading.BoundedSemaphore(IN_FLIGHT)

    def replay(item: dict[str, Any]) -> None:
        try:
            if stop:
                return
            try:
                result = api.replay(item["id"], why)
            except ApiError as error:
                with lock:
                    if error.status != 409:
                        stop.append(error)
                        return
                    outcomes["refused"] += 1
                    refusals[str(error).split(": ", 1)[-1].split(" (")[0][:120]] += 1
            else:
                with lock:
                    outcomes["replayed" if result["started"] else "replayed before"] += 1
            progress.update(1)
        finally:
            slots.release()

    with tqdm(total=len(selected), unit="replay", file=sys.stderr, mininterval=0.5,
              desc=f"replaying at {rate:g}/s") as progress, ThreadPoolExecutor(IN_FLIGHT) as pool:
        due = started
        for item in selected:
            slots.acquire()  # waits while IN_FLIGHT replays are under way
            if stop:
                slots.release()
                break
            due = max(due, time.monotonic())  # after a wait for a slot the pace goes on from now
            if (wait := due - time.monotonic()) > 0:
                sleep(wait)
            pool.submit(replay, item)
            due += 1 / rate
    if stop:
        done = sum(outcomes.values())
        print(f"stopped after {done} of {len(selected)}: {stop[0]}\nRun the same command again to go on: the "
              "dead letters replayed so far are no longer Kept, so none is replayed twice.", file=sys.stderr)
        _print_summary(outcomes, refusals)
        return 1
    elapsed = time.monotonic() - started
    _print_summary(outcomes, refusals)
    print(f"{len(selected)} dead letter(s) in {elapsed:.1f}s ({len(selected) / max(elapsed, 1e-9):.1f}/s)")
    return 0


def _print_summary(outcomes: Counter[str], refusals: Counter[str]) -> None:
    print(f"replayed: {outcomes['replayed']}, replayed before: {outcomes['replayed before']}, "
          f"refused: {outcomes['refused']}")
    for reason, count in refusals.most_common():
        print(f"  refused {count}×: {reason}")


def _print_replayed(result: dict[str, Any]) -> int:
    if result["started"]:
        print(f"dead letter {result['deadLetterId']}: order {result['correlationId']} is Accepted again as attempt "
              f"{result['attempt']}; follow it at {result['statusUrl']}")
    else:
        print(f"dead letter {result['deadLetterId']} was replayed before (attempt {result['attempt']}); "
              + ("its order was sent again" if result["sent"] else "that attempt has its outcome, nothing was sent"))
    return 0


def _require_why(options: argparse.Namespace) -> None:
    if not (options.why or "").strip():
        raise ApiError("say why with --why \"...\": it is recorded with your name for whoever looks later")


def _filters(options: argparse.Namespace) -> dict[str, str]:
    pairs = {"reason": options.reason, "since": options.since, "until": options.until,
             "customerId": options.customer, "correlationId": options.correlation_id,
             "state": getattr(options, "state", None)}
    return {name: value for name, value in pairs.items() if value}


def _rate(value: str) -> float:
    rate = float(value)
    if not 0 < rate <= MAX_RATE:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most {MAX_RATE:g} replays per second")
    return rate


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dead_letter_admin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default=os.environ.get("ORDERS_API_URL", DEFAULT_API_URL),
                        help="the orders API's base URL, ending in /api (ORDERS_API_URL; default %(default)s)")
    parser.add_argument("--token", default=os.environ.get("ORDERS_ADMIN_TOKEN"),
                        help="an access token with the app role Orders.Admin (ORDERS_ADMIN_TOKEN)")
    parser.add_argument("--scope", default=os.environ.get("ORDERS_API_SCOPE"),
                        help="sign in with Entra ID (az login, managed or workload identity) for this scope, "
                             "e.g. api://<API app id>/.default (ORDERS_API_SCOPE)")
    parser.add_argument("--dev-identity", default=os.environ.get("ORDERS_DEV_IDENTITY_URL"),
                        help="the development identity provider (local runs; the default for a local --api)")
    parser.add_argument("--dev-user", default=LOCAL_OPERATOR, help="the development operator (default %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_filters(command: argparse.ArgumentParser) -> None:
        command.add_argument("--reason", help="only this dead-letter reason, e.g. MaxDeliveryCountExceeded")
        command.add_argument("--since", help="dead-lettered at or after this time (ISO 8601 with offset, e.g. "
                                             "2026-12-01T08:00:00Z)")
        command.add_argument("--until", help="dead-lettered before this time")
        command.add_argument("--customer", help="only this customer's")
        command.add_argument("--correlation-id", help="only this order's")

    listing = commands.add_parser("list", help="the kept dead letters, filtered",
                                  description="List kept dead letters, oldest first.")
    with_filters(listing)
    listing.add_argument("--state", choices=["Kept", "Replayed", "Discarded"], help="only those in this state")
    listing.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    listing.set_defaults(run=list_command)

    show = commands.add_parser("show", help="one dead letter in full",
                               description="Show a dead letter: body, properties, its order's status, its audit.")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    show.set_defaults(run=show_command)

    replay = commands.add_parser("replay", help="give Failed orders a new attempt", description=(
        "Replay one dead letter (an id), or every Kept one matching the filters. A replay makes the order Accepted "
        "again as its next attempt and sends it to the orders queue in its customer's session; replaying the same "
        "dead letter again starts nothing new. Completed or Rejected orders are never replayed, bodies that are "
        "not orders must be repaired."))
    replay.add_argument("id", type=int, nargs="?", help="the dead letter's id (or use filters)")
    with_filters(replay)
    replay.add_argument("--why", help="why (kept in the audit with your name)")
    replay.add_argument("--dry-run", action="store_true", help="list what would be replayed, change nothing")
    replay.add_argument("--yes", action="store_true", help="replay every match (after a --dry-run)")
    replay.add_argument("--rate", type=_rate, default=DEFAULT_RATE,
                        help="replays per second in bulk (default %(default)g, at most 500)")
    replay.set_defaults(run=replay_command)

    repair = commands.add_parser("repair", help="replay with a corrected order", description=(
        "Replay a dead letter with a corrected order instead of its kept body: a JSON file (or - for stdin) "
        'like {"customerId": "c-1", "currency": "EUR", "items": [{"sku": "SKU-1", "quantity": 1}]}, validated '
        "as POST /api/orders validates a body. The customer must be the order's."))
    repair.add_argument("id", type=int)
    repair.add_argument("--order", required=True, help="the corrected order: a JSON file, or - for stdin")
    repair.add_argument("--why", help="why (kept in the audit with your name)")
    repair.set_defaults(run=repair_command)

    discard = commands.add_parser("discard", help="never retry it", description=(
        "Discard a dead letter: the record and its audit stay, it is never replayed, its order keeps its status."))
    discard.add_argument("id", type=int)
    discard.add_argument("--why", help="why (kept in the audit with your name)")
    discard.set_defaults(run=discard_command)
    return parser


if __name__ == "__main__":
    sys.exit(main())
