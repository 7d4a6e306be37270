"""The firmware on the emulated Pico (make bench): boot, heap and strokes,
the standard scenarios there, and the frozen image (make firmware): build,
size, the RP2350 variant, the peak heap frozen vs .mpy vs the 64-bit host.
Each part says "skipped" with the reason where Node, the UF2, the MicroPython
sources or the Arm toolchain are missing."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.benchmarks.common import Row
from bench.link.errors import BenchError
from bench.link.pump import PumpClient
from bench.robustness.common import program_fields

PICO_STROKE_WALL_S = 20.0
# Strokes per wall second in fast mode: at the pump's maximum rate (a stroke
# every 0.72 s), so that the figure is the emulated board's stroke throughput
# and not the idle time between a slow program's strokes. No drug: the drug
# library's limits do not apply.
PICO_STROKES_NL_DAY = 24_000_000


def emulated_pico() -> list[Row]:
    """Boot, heap and stroke figures of the firmware on the emulated Pico."""
    from bench.board import pico, pico_pump

    lack = pico.missing()
    if lack:
        return [Row("emulated Pico", "skipped", "", lack)]
    pico.staged_image()
    rows = []
    started = time.perf_counter()
    with pico.PicoBoard() as board:
        pico_pump.wait_hello(board)
        wall = time.perf_counter() - started
        emulated = board.status()["first_tx_ns"] / 1e9
        rows.append(
            Row("pico: boot to HELLO, emulated", f"{emulated:.2f}", "s", "reset to the reply")
        )
        rows.append(Row("pico: boot to HELLO, wall", f"{wall:.1f}", "s", "incl. Node start"))
        with PumpClient(board.pump_port, timeout_s=30.0) as pump:
            pico_pump.start_program(
                pump, program_fields(drug_id=0, conc_ug_ml=0, basal_nl_day=PICO_STROKES_NL_DAY)
            )
            first = board.status()
            t0 = time.perf_counter()
            time.sleep(PICO_STROKE_WALL_S)
            last = board.status()
            spent = time.perf_counter() - t0
        strokes = (last["step_rises_enabled"] - first["step_rises_enabled"]) / 8
        ratio = (last["now_ns"] - first["now_ns"]) / 1e9 / spent
        rows.append(
            Row(
                "pico: strokes per wall second",
                f"{strokes / spent:.2f}",
                "1/s",
                f"24 mL/day, fast mode: emulated {ratio:.1f} x wall time",
            )
        )
        pico_pump.maintenance(board)
        heap = pico_pump.measure_heap(board)
        rows.append(
            Row("pico: free heap at idle", f"{heap['idle_free']:,}", "B", "gc.mem_free(), 32-bit")
        )
        rows.append(
            Row(
                "pico: free heap in a stroke",
                f"{heap['stroke_free']:,}",
                "B",
                f"{heap['stroke_alloc']:,} B allocated (board and app built)",
            )
        )
    rows += pico_scenarios()
    return rows


# Scenarios planning more device time than this are not run on the emulated
# Pico: a device hour costs about 20 s of wall time plus 0.1-0.5 s a stroke
# on two cores (most of it the emulated CPU: the pump's loop, its strokes and
# journal writes), so the 90-day soak would take a day and the multi-day dose
# scenarios an hour or more each.
PICO_SCENARIO_MAX_MS = 8 * 3_600_000
# ... except these, which plan days but end at their alarm: `leak` (a day of
# flow, then LEAK) and `occlusion-minimum-rate` (12 h, OCCLUSION, 2 h after),
# 5-20 minutes of wall time each.
PICO_LONG_SCENARIOS = ("leak", "occlusion-minimum-rate")
# ... and these are not physically possible there: not run (the rig refuses
# what a fixture cannot do to a chip from outside, firmware/virtual/pico_rig.py).
PICO_NOT_POSSIBLE = {
    "clock-fast-1.1x": "TIMER_FAST: the crystal is the chip's own",
    "clock-fast-3x": "TIMER_FAST: the crystal is the chip's own",
    "clock-fast-10x": "TIMER_FAST: the crystal is the chip's own",
    # a fixture resets a Pico by its RUN pin: machine.reset_cause() says
    # PWRON_RESET (there is no RIG_RESET cause), and a boot takes device time
    "reset": "a RUN-pin reset reads as POWER_ON on the rp2 port, not RIG_RESET",
}


def pico_scenarios(
    max_device_ms: int = PICO_SCENARIO_MAX_MS, only: tuple[str, ...] = ()
) -> list[Row]:
    """The standard scenarios (bench/scenarios) on the emulated Pico and its rig:
    which pass, and which are not physically possible there (or too long).
    ``only``: these scenario ids alone."""
    from bench.board import pico, pico_pump
    from bench.report.records import Outcome
    from bench.scenario.load import load_scenario
    from bench.scenario.runner import run_scenario

    lack = pico.missing()
    if lack:
        return [Row("pico: standard scenarios", "skipped", "", lack)]
    target = pico_pump.pico_target()
    target.preflight()
    folder = Path(__file__).resolve().parents[1] / "scenarios"
    rows: list[Row] = []
    passed: list[str] = []
    counted = 0
    for path in sorted(folder.glob("*.yaml")):
        scenario = load_scenario(path)
        if only and scenario.id not in only:
            continue
        if scenario.id in PICO_NOT_POSSIBLE:
            rows.append(
                Row(f"pico: {scenario.id}", "not possible", "", PICO_NOT_POSSIBLE[scenario.id])
            )
            continue
        started = time.perf_counter()
        limit = None if scenario.id in PICO_LONG_SCENARIOS else max_device_ms
        record = run_scenario(scenario, target, max_device_ms=limit)
        wall = time.perf_counter() - started
        why = record.problems[0] if record.problems else ""
        if record.outcome is Outcome.SKIP:
            rows.append(Row(f"pico: {scenario.id}", "not run", "", why[:70]))
            continue
        counted += 1
        if record.outcome is Outcome.PASS:
            passed.append(scenario.id)
        rows.append(
            Row(f"pico: {scenario.id}", record.outcome.name, "", f"{wall:.0f} s wall {why[:50]}")
        )
    rows.append(
        Row(
            "pico: standard scenarios passing",
            f"{len(passed)}/{counted}",
            "",
            "run on the emulated Pico and its rig (the rest: not run or not possible, above)",
        )
    )
    return rows


def frozen_firmware() -> list[Row]:
    """make firmware: a clean build's time, the image's sizes, and the real heap of the
    frozen image beside the .mpy install on the emulated Pico (board and app built)."""
    from bench.board import firmware, pico, pico_pump

    if shutil.which("arm-none-eabi-gcc") is None or not os.environ.get(firmware.ENV_SOURCES):
        return [
            Row("frozen firmware", "skipped", "", "needs the Arm toolchain and MICROPYTHON_SRC")
        ]
    with tempfile.TemporaryDirectory(prefix="firmware-") as scratch:
        started = time.perf_counter()
        clean = firmware.build(out=Path(scratch))  # a clean build, as on a fresh clone
        clean_s = time.perf_counter() - started
        clean_bytes = clean.read_bytes()
    uf2 = firmware.build()  # the project's own build/firmware (reused by tests)
    record = json.loads((uf2.parent / "manifest.json").read_text())
    # The same sources give the same bytes: two builds in two folders (a
    # benchmark, not a test: two clean builds cost 2-7 minutes).
    same = clean_bytes == uf2.read_bytes()
    rows = [
        Row("frozen: clean build", f"{clean_s:.0f}", "s", "MicroPython rp2 port + the pump"),
        Row(
            "frozen: two builds, same bytes",
            "yes" if same else "NO",
            "",
            f"UF2 sha256 {record['uf2']['sha256'][:16]}..., clean folder vs build/firmware",
        ),
        Row("frozen: firmware.bin", f"{record['firmware_bin']['size']:,}", "B", uf2.name),
        Row(
            "frozen: pump bytecode",
            f"{record['frozen_bytecode_bytes']:,}",
            "B",
            f"{len(record['frozen_modules'])} modules in flash",
        ),
    ]
    rows += _rp2350_rows(firmware)
    lack = pico.missing()
    if lack:
        return [*rows, Row("frozen: heap", "skipped", "", lack)]
    from bench.board import pico_heap
    from bench.link import keys as keysmod

    work = pico_heap.session_and_bolus(program_fields(), PICO_BOLUS_NL)
    # real time: maintenance() presses BOOTSEL within the 2 s window after a reset
    for label, options in (
        ("frozen image", {"firmware": False, "keys": None, "uf2": uf2, "mode": "realtime"}),
        (".mpy on stock MicroPython", {"mode": "realtime"}),
    ):
        with pico.PicoBoard(**options) as board:
            # the frozen image's filesystem is empty: its keys come by PROVISION
            keys = board.keys or keysmod.generate()

            def provisioned(pump: PumpClient, keys: keysmod.DeviceKeys = keys) -> None:
                pump.provision(keys)  # (refused as PROVISIONED on the .mpy install)
                work(pump)

            pico_pump.wait_hello(board)
            pico_pump.maintenance(board)
            heap = pico_pump.measure_heap(board)
            peak = pico_heap.measure(board, provisioned, keys=keys)
        rows.append(
            Row(
                f"heap used, {label}",
                f"{heap['stroke_alloc']:,}",
                "B",
                f"gc.mem_alloc() in a stroke, 32-bit, of 245,888 (free {heap['stroke_free']:,})",
            )
        )
        rows.append(
            Row(
                f"heap peak, {label}",
                f"{peak['peak_alloc']:,}",
                "B",
                f"live at the loop's passes: session {peak['session_alloc']:,}, "
                f"bolus {peak['bolus_alloc']:,} ({peak['samples']} passes)",
            )
        )
    rows.append(host_heap())
    rows.append(_frozen_scenario(pico_pump, uf2, "motor-stall"))
    return rows


def _frozen_scenario(pico_pump: Any, uf2: Path, name: str) -> Row:
    """A standard scenario on the emulated Pico booting the frozen image
    (``pumpbench run --target pico --uf2``)."""
    from bench.scenario.load import load_scenario
    from bench.scenario.runner import run_scenario

    scenario = load_scenario(Path(__file__).resolve().parents[1] / "scenarios" / f"{name}.yaml")
    started = time.perf_counter()
    record = run_scenario(scenario, pico_pump.pico_target(uf2))
    why = record.problems[0][:50] if record.problems else ""
    wall = time.perf_counter() - started
    return Row(f"frozen: {name}", record.outcome.name, "", f"{wall:.0f} s wall {why}".rstrip())


PICO_BOLUS_NL = 1_000  # a clinician bolus of 5 strokes


def _rp2350_rows(firmware: Any) -> list[Row]:
    """The Pico 2 image: built and checked (family, addresses, E10 block, IMAGE_DEF),
    never booted (there is no RP2350 emulator)."""
    started = time.perf_counter()
    try:
        uf2 = firmware.build(board_name="RPI_PICO2")
    except BenchError as exc:
        return [Row("frozen RP2350", "failed", "", str(exc).splitlines()[0][:80])]
    record = json.loads(firmware.manifest_path("RPI_PICO2").read_text())
    return [
        Row(
            "frozen RP2350: build",
            f"{time.perf_counter() - started:.0f}",
            "s",
            "FIRMWARE_BOARD=RPI_PICO2 (its folder kept: incremental after the first)",
        ),
        Row(
            "frozen RP2350: firmware.bin",
            f"{record['firmware_bin']['size']:,}",
            "B",
            f"{uf2.name}: family 0xe48bff59 + E10 block; not booted (no RP2350 emulator)",
        ),
    ]


def host_heap() -> Row:
    """The 64-bit host figure: the Pico configuration (rp2 HAL on fake machine/rp2)
    under the unix port, live after boot (tests/modules/test_rp2_hal.py's guard)."""
    try:
        from tests.modules import upy
        from tests.modules.test_rp2_hal import FAKES, _hello_frame
    except ImportError as exc:  # outside a checkout
        return Row("heap used, 64-bit host", "skipped", "", str(exc))
    result = upy.run("check_rp2_main.py", "hello", _hello_frame(), heap="4M", path=FAKES)
    used = result["heap_imports"] + result["heap_boot"]
    return Row(
        "heap used, 64-bit host",
        f"{used:,}",
        "B",
        f"unix port, fake machine/rp2: {result['heap_imports']:,} modules "
        f"+ {result['heap_boot']:,} objects after boot",
    )
