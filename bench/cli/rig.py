"""``pumpbench rig ...``: the rig port of a running board, for a person at the terminal.

``pumpbench sim`` prints a rig port beside the pump port; these commands
drive it so that a person can watch therapy run: move device time
(``advance``), read what really happened (``truth``), break the plant
(``fault``, ``clear``), cut and restore power (``power``), sample the line
pressure (``trace``) and set the plant (``plant``). Every one needs
``--rig PORT``; there is no ``--target sim`` here, since a private board
would be gone, and its therapy with it, when the command ends.

Values go in and come out in human units with the bench's own parsers:
durations ``2h``, ``90min``, ``1h 30min``, ``250ms``; volumes ``50uL``,
``0.5 mL``; pressures ``15 mmHg``; a bare number is refused wherever a unit
is meant. Exit codes as every command: 0 ok, 1 the rig refused (NACK),
2 bench error.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from bench import units
from bench.link.client import PLANT_NOMINAL, fault_id
from bench.link.rig import RigClient
from bench.program import file as pf
from protocol import schema
from protocol.table import POWER_CUT_AFTER_BYTES, POWER_CUT_IN_MS, POWER_OFF, POWER_ON

TRACE_RING = 512  # samples the rig keeps (SPEC 16.4)


# --- units in ----------------------------------------------------------------------


def _quantity(text: str, target: str, what: str, example: str) -> int:
    """``text`` in the wire unit ``target``: a unit required, a whole result."""
    stripped = text.strip()
    if not stripped or stripped.lstrip("+-").replace(".", "", 1).isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: a {what} needs a unit, e.g. {example}")
    try:
        return units.whole(stripped, target, what=what, low=-(1 << 63), high=(1 << 63) - 1)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration_ms(text: str) -> int:
    """``2h``, ``90min``, ``1.5h``, ``250ms`` in whole ms (never negative)."""
    value = _quantity(text, "ms", "duration", "2h, 90min, 250ms")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration is not negative")
    return value


def volume_nl(text: str) -> int:
    try:
        return units.volume_nl(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _concentration(text: str) -> int:
    try:
        return pf.parse_concentration_ug_ml(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_concentration.__name__ = "concentration"


def pressure_x10(text: str) -> int:
    """``15 mmHg``, ``-2.5 mmHg`` in the wire's 0.1 mmHg."""
    return _quantity(text, "0.1 mmHg", "pressure", "15 mmHg")


def _count(text: str) -> int:
    if not text.isdigit() or len(text) > 10:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)


def _integer(text: str) -> int:
    stripped = text.strip()
    if not stripped.lstrip("+-").isdigit() or len(stripped) > 11:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer")
    return int(stripped)


for _parse, _name in (
    (duration_ms, "duration"),
    (volume_nl, "volume"),
    (pressure_x10, "pressure"),
    (_count, "count"),
    (_integer, "integer"),
):
    _parse.__name__ = _name  # argparse names the type in its messages


def _port(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "an empty port: give the rig port `pumpbench sim` printed (or its --link PATH-rig)"
        )
    return text


_port.__name__ = "port"


# A fault's param, by what it means (SPEC 16.3): how it is written and shown.
_FAULT_PARAMS: dict[str, tuple[Callable[[str], int], str]] = {
    "RUNAWAY": (_count, "extra steps per commanded step"),
    "OCCLUSION": (_count, "resistance factor; 0: full occlusion"),
    "LEAK": (lambda t: _quantity(t, "%", "share", "80%"), "% of the flow lost"),
    "LOST_STEPS": (lambda t: _quantity(t, "%", "share", "10%"), "% of the steps lost"),
    "SENSOR_OFFSET": (pressure_x10, "0.1 mmHg added to every reading"),
    "BATTERY": (lambda t: _quantity(t, "mV", "voltage", "2.5V, 2400mV"), "battery mV"),
    "CORRUPT_JOURNAL": (_count, "byte offset"),
    "CSF_PRESSURE": (pressure_x10, "CSF pressure, 0.1 mmHg"),
    "TIMER_FAST": (lambda t: _per_mille(t), "timer factor, per mille"),
}


def _per_mille(text: str) -> int:
    """``x1.1``, ``1.1x`` or ``3`` as a timer factor in per mille (1 100, 3 000)."""
    stripped = text.strip().lower().strip("x")
    try:
        value = Fraction(stripped) * 1000 if len(stripped) < 20 else None
    except ValueError:
        value = None
    if value is None or value.denominator != 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a timer factor, e.g. x1.1 or 3")
    return value.numerator


def fault_param(fault: str, text: str | None) -> int:
    """The INJECT_FAULT param for ``fault``, from a person's ``text`` (None: 0)."""
    if text is None:
        return 0
    parse, _meaning = _FAULT_PARAMS.get(fault, (_integer, ""))
    return parse(text)


# --- units out ---------------------------------------------------------------------


def mmhg(x10: int) -> str:
    sign = "-" if x10 < 0 else ""
    return f"{sign}{abs(x10) // 10}.{abs(x10) % 10} mmHg"


def microlitres(nl: int) -> str:
    sign = "-" if nl < 0 else ""
    whole, rest = divmod(abs(nl), 1000)
    return f"{sign}{whole}.{rest:03d} uL"


def device_time(ms: int) -> str:
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{days}d {hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def _show(args: argparse.Namespace, data: dict[str, Any], lines: list[tuple[str, str]]) -> None:
    if args.json:
        print(json.dumps(data, sort_keys=True))
        return
    width = max(len(label) for label, _value in lines) + 2
    for label, value in lines:
        print(f"{label + ':':<{width}}{value}")


# --- commands ----------------------------------------------------------------------


def _rig(args: argparse.Namespace) -> RigClient:
    rig = RigClient(args.rig)
    try:
        rig.hello()  # the rig answers, and speaks this bench's schema
    except BaseException:
        rig.close()
        raise
    return rig


def cmd_advance(args: argparse.Namespace) -> int:
    with _rig(args) as rig:
        now = rig.advance(args.duration)
    data = {"advanced_ms": args.duration, "device_time_ms": now}
    _show(
        args,
        data,
        [
            ("advanced", duration_text(args.duration)),
            ("device time", f"{now} ms ({device_time(now)})"),
        ],
    )
    return 0


def duration_text(ms: int) -> str:
    """``1 d 2 h``, ``1 s 250 ms``, ``250 ms``: whole units, exactly."""
    seconds, rest = divmod(ms, 1000)
    if not rest:
        return pf.format_duration(seconds)
    return (pf.format_duration(seconds) + " " if seconds else "") + f"{rest} ms"


def cmd_truth(args: argparse.Namespace) -> int:
    with _rig(args) as rig:
        truth = rig.truth()
    lines = [
        ("pumped", f"{microlitres(truth['pumped_nl'])} out of the reservoir"),
        ("at the tip", f"{microlitres(truth['tip_nl'])}, {pf.format_dose(truth['tip_ng'])}"),
        ("in the pocket", f"{microlitres(truth['pocket_nl'])} (leak or disconnection)"),
        ("released", f"{microlitres(truth['released_nl'])} at the last occlusion relief"),
        ("reservoir", f"{pf.format_volume(truth['reservoir_nl'])} really in it"),
        ("head steps", str(truth["steps"])),
        ("powered", "yes" if truth["powered"] else "no"),
        ("journal", f"{truth['journal_bytes']} bytes written"),
    ]
    _show(args, truth, lines)
    return 0


def cmd_fault(args: argparse.Namespace) -> int:
    try:
        code = fault_id(args.fault)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    name = schema.fault_name(code)
    param = fault_param(name, args.param)
    with _rig(args) as rig:
        rig.inject_fault(code, param, args.onset)
    when = f"in {device_time(args.onset)} of device time" if args.onset else "now"
    meaning = _FAULT_PARAMS.get(name, (None, ""))[1]
    shown = f", param {param}" + (f" ({meaning})" if meaning else "") if args.param else ""
    data = {"fault": name, "param": param, "onset_ms": args.onset}
    _show(args, data, [("fault", f"{name}{shown}, starting {when}")])
    return 0


def cmd_fill(args: argparse.Namespace) -> int:
    with _rig(args) as rig:
        withdrawn = rig.fill(args.volume, args.concentration)
    drug = pf.format_concentration(args.concentration) if args.concentration else "saline"
    data = {
        "reservoir_nl": args.volume,
        "conc_ug_ml": args.concentration,
        "withdrawn_nl": withdrawn,
    }
    lines = [
        ("withdrawn", f"{pf.format_volume(withdrawn)} (what was really in it)"),
        ("filled", f"{pf.format_volume(args.volume)} of {drug}"),
    ]
    _show(args, data, lines)
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    code = 0
    if args.fault is not None:
        try:
            code = fault_id(args.fault)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    with _rig(args) as rig:
        rig.clear_fault(code)
    name = schema.fault_name(code) if code else "every fault"
    _show(args, {"cleared": name}, [("cleared", name)])
    return 0


_POWER = {"off": POWER_OFF, "on": POWER_ON, "cut-after": POWER_CUT_AFTER_BYTES}


def cmd_power(args: argparse.Namespace) -> int:
    action = args.action
    if action == "cut-in":
        code, arg = POWER_CUT_IN_MS, duration_ms(args.arg or "")
    elif action == "cut-after":
        code, arg = POWER_CUT_AFTER_BYTES, _count(args.arg or "")
    else:
        if args.arg is not None:
            raise argparse.ArgumentTypeError(f"power {action} takes no argument")
        code, arg = _POWER[action], 0
    with _rig(args) as rig:
        powered = rig.power(code, arg)
    what = {
        "off": "power off",
        "on": "power on",
        "cut-after": f"power cut armed after {arg} more journal bytes",
        "cut-in": f"power cut armed in {device_time(arg)} of device time",
    }[action]
    data = {"action": action, "arg": arg, "powered": powered}
    _show(args, data, [("power", what), ("powered", "yes" if powered else "no")])
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    with _rig(args) as rig:
        if args.period is not None:
            rig.request("TRACE_CONFIG", {"period_ms": args.period})
            if args.json:
                print(json.dumps({"period_ms": args.period}))
            elif args.period:
                print(f"trace: one sample every {args.period} ms of device time from now")
            else:
                print("trace: stopped (the samples are kept)")
            return 0
        samples, total = _trace_samples(rig, args.start, args.count)
    if args.json:
        print(json.dumps({"total": total, "samples": samples}, sort_keys=True))
        return 0
    print(f"{args.rig}: {len(samples)} of {total} trace samples")
    rows = [
        (
            device_time(s["time_ms"]),
            microlitres(s["tip_nl"]),
            mmhg(s["pressure_x10"]),
            mmhg(s["sensor_x10"]),
        )
        for s in samples
    ]
    header = ("device time", "at the tip", "pressure", "sensor read")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _trace_samples(rig: RigClient, start: int, count: int | None) -> tuple[list[dict], int]:
    samples: list[dict[str, int]] = []
    index = start
    total = 0
    while count is None or len(samples) < count:
        page = rig.request("TRACE", {"start": index, "count": 12})
        total = page["total"]
        for i in range(page["count"]):
            samples.append(
                {
                    "index": page["first"] + i,
                    "time_ms": page["time_ms"][i],
                    "tip_nl": page["tip_nl"][i],
                    "pressure_x10": page["pressure_x10"][i],
                    "sensor_x10": page["sensor_x10"][i],
                }
            )
        if page["count"] == 0:
            break
        index = page["first"] + page["count"]
        if index >= total:
            break
    return (samples if count is None else samples[:count]), total


CATHETER_NL_PER_CM = 2_600  # SPEC 16.1: catheter volume per cm


def _catheter_nl(text: str) -> int:
    """``60cm`` (at 2.6 uL/cm) or a volume (``156uL``)."""
    stripped = text.strip()
    if stripped.endswith("cm"):
        try:
            length = Fraction(stripped[:-2].strip()) if len(stripped) < 20 else None
        except ValueError:
            length = None
        if length is None or (length * CATHETER_NL_PER_CM).denominator != 1:
            raise argparse.ArgumentTypeError(f"{text!r} is not a catheter length, e.g. 60cm")
        return int(length * CATHETER_NL_PER_CM)
    return volume_nl(text)


_catheter_nl.__name__ = "catheter"


def _compliance_x10(text: str) -> int:
    """``5 nL/mmHg`` in 0.1 nL/mmHg."""
    stripped = text.strip()
    if not stripped.endswith("nL/mmHg"):
        raise argparse.ArgumentTypeError(f"{text!r}: a compliance in nL/mmHg, e.g. 5nL/mmHg")
    try:
        value = Fraction(stripped[: -len("nL/mmHg")].strip()) * 10 if len(stripped) < 30 else None
    except ValueError:
        value = None
    if value is None or value.denominator != 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0.1 nL/mmHg")
    return value.numerator


_compliance_x10.__name__ = "compliance"


def cmd_plant(args: argparse.Namespace) -> int:
    fields = {
        name: getattr(args, name) for name in PLANT_NOMINAL if getattr(args, name, None) is not None
    }
    with _rig(args) as rig:
        rig.plant(**fields)
    plant = {**PLANT_NOMINAL, **fields}
    lines = [
        ("head error", f"{plant['calibration_ppm']} ppm"),
        (
            "catheter",
            f"{microlitres(plant['catheter_nl'])} "
            f"({plant['catheter_nl'] / CATHETER_NL_PER_CM:.4g} cm), "
            f"{microlitres(plant['catheter_empty_nl'])} of it empty",
        ),
        ("reservoir", pf.format_volume(plant["reservoir_nl"])),
        ("compliance", f"{plant['compliance_x10'] / 10:g} nL/mmHg"),
        ("resistance", f"{plant['resistance_pct']} % of Poiseuille"),
        ("sensor noise", mmhg(plant["noise_x10"])),
        ("CSF pressure", mmhg(plant["csf_x10"])),
    ]
    _show(args, plant, [("plant", "set (fields not given: nominal)"), *lines])
    return 0


# --- parser ------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rig",
        required=True,
        type=_port,
        metavar="PORT",
        help="the rig port `pumpbench sim` printed (any pyserial URL)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")


def add_parser(commands: Any) -> None:
    """Registers ``pumpbench rig ACTION`` (each action sets ``func``)."""
    rig = commands.add_parser(
        "rig", help="the rig port of a running board: time, truth, faults, power, trace, plant"
    )
    actions = rig.add_subparsers(dest="rig_command", required=True, metavar="ACTION")

    advance = actions.add_parser("advance", help="run device time forward (lockstep boards)")
    advance.add_argument("duration", type=duration_ms, metavar="TIME", help="e.g. 2h, 90min")
    _common(advance)
    advance.set_defaults(func=cmd_advance)

    truth = actions.add_parser("truth", help="what really left the reservoir and the tip")
    _common(truth)
    truth.set_defaults(func=cmd_truth)

    names = ", ".join(name for _code, name in schema.FAULTS)
    fault = actions.add_parser("fault", help="inject a plant fault (SPEC 16.3)")
    fault.add_argument("fault", metavar="NAME", help=f"one of {names} (or its id)")
    fault.add_argument(
        "param",
        nargs="?",
        metavar="PARAM",
        help="the fault's parameter in its unit: 80%% (LEAK), 40mmHg (SENSOR_OFFSET, "
        "CSF_PRESSURE), 2.4V (BATTERY), x1.1 (TIMER_FAST), a count otherwise",
    )
    fault.add_argument(
        "--onset", type=duration_ms, default=0, metavar="TIME", help="device time from now"
    )
    _common(fault)
    fault.set_defaults(func=cmd_fault)

    fill = actions.add_parser(
        "fill", help="empty the real reservoir and fill it (the clinician's syringe)"
    )
    fill.add_argument("volume", type=volume_nl, metavar="VOL", help="e.g. 20mL")
    fill.add_argument(
        "--concentration",
        type=_concentration,
        default=0,
        metavar="CONC",
        help="its drug, e.g. 10mg/mL (default: saline); TRUTH counts the dose at the tip",
    )
    _common(fill)
    fill.set_defaults(func=cmd_fill)

    clear = actions.add_parser("clear", help="clear one plant fault, or every one")
    clear.add_argument("fault", nargs="?", metavar="NAME", help="default: every fault")
    _common(clear)
    clear.set_defaults(func=cmd_clear)

    power = actions.add_parser("power", help="power off, on, or a cut armed in time or bytes")
    power.add_argument("action", choices=("off", "on", "cut-in", "cut-after"))
    power.add_argument(
        "arg", nargs="?", metavar="TIME|BYTES", help="cut-in: device time; cut-after: bytes"
    )
    _common(power)
    power.set_defaults(func=cmd_power)

    trace = actions.add_parser("trace", help="line pressure samples: start, stop, read")
    trace.add_argument(
        "--period",
        type=duration_ms,
        metavar="TIME",
        help="(re)start sampling every TIME of device time (0ms: stop)",
    )
    trace.add_argument("--start", type=_count, default=0, metavar="N", help="first sample")
    trace.add_argument("--count", type=_count, metavar="N", help=f"samples (ring: {TRACE_RING})")
    _common(trace)
    trace.set_defaults(func=cmd_trace)

    plant = actions.add_parser(
        "plant", help="set the plant; every field not given goes back to nominal"
    )
    plant.add_argument("--calibration", dest="calibration_ppm", type=_integer, metavar="PPM")
    plant.add_argument("--catheter", dest="catheter_nl", type=_catheter_nl, metavar="CM|VOL")
    plant.add_argument("--empty", dest="catheter_empty_nl", type=volume_nl, metavar="VOL")
    plant.add_argument("--reservoir", dest="reservoir_nl", type=volume_nl, metavar="VOL")
    plant.add_argument("--compliance", dest="compliance_x10", type=_compliance_x10, metavar="C")
    plant.add_argument("--resistance", dest="resistance_pct", type=_count, metavar="PCT")
    plant.add_argument("--noise", dest="noise_x10", type=pressure_x10, metavar="P")
    plant.add_argument("--csf", dest="csf_x10", type=pressure_x10, metavar="P")
    _common(plant)
    plant.set_defaults(func=cmd_plant)
