"""The therapy history outlives the refill interval.

180 days of a busy patient on the virtual board: 4 patient boluses a day,
each from a patient programmer in a session of its own, a refill and a new
program every 30 days, and on top 1,000 refused presses and 1,000 idle
session opens. Sessions and refusals go to the access log (docs/pump.md section 15),
so the event log still holds every entry of the 180 days: nothing aged out,
every REFILL, PROGRAM_ACTIVE and bolus is there, and the access log's tally
counts every refused press.
"""

from __future__ import annotations

import pytest

from bench.board.sim import VirtualBoard
from bench.link.errors import PumpRefused
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from protocol import schema
from tests.system import kit

DAYS = 180
PRESSES = 4  # granted a day
REFUSED = 1000  # refused presses over the run
OPENS = 1000  # idle session opens over the run
PB = {"pb_dose_nl": 2_000, "pb_lockout_s": 3 * 3600, "pb_max_per_day": PRESSES}


# About 7,000 signed requests: 45-75 s on a busy 2-core host, past the
# suite's 120 s default at load 5.
@pytest.mark.timeout(400)
def test_180_days_of_a_busy_patient_stay_in_the_log_whatever_the_session_traffic(
    board: VirtualBoard, pump: PumpClient, rig: RigClient
) -> None:
    clinician = pump.keys
    patient = board.keys.only(schema.ROLE_PATIENT)

    def as_patient() -> None:
        pump.keys, pump.role, pump.session = patient, schema.ROLE_PATIENT, None

    def as_clinician() -> None:
        pump.keys, pump.role, pump.session = clinician, schema.ROLE_CLINICIAN, None

    refills = programs = 0
    refused = opens = 0
    for day in range(DAYS):
        if day % 30 == 0:
            as_clinician()
            kit.refill(pump, rig, 10_000_000)
            kit.activate(pump, kit.program(basal_nl_day=100_000 + day, **PB))
            pump.close_session()
            refills += 1
            programs += 1
        as_patient()
        for press in range(PRESSES):
            pump.patient_bolus()
            for _ in range(REFUSED // DAYS + (1 if day < REFUSED % DAYS else 0)):
                if press == 0:
                    try:
                        pump.patient_bolus()  # inside the lockout
                    except PumpRefused as no:
                        assert no.code in (schema.LOCKOUT, schema.BOLUS_ACTIVE)
                        refused += 1
            pump.close_session()
            if press == 0:
                for _ in range(OPENS // DAYS + (1 if day < OPENS % DAYS else 0)):
                    pump.open_session()
                    pump.close_session()
                    opens += 1
            rig.advance(6 * 3600 * 1000)
    assert refused == REFUSED and opens == OPENS
    log = pump.log()
    assert log[0]["index"] == 0, "therapy history aged out"
    names = [e["name"] for e in log]
    assert names.count("REFILL") == refills
    assert names.count("PROGRAM_ACTIVE") == programs
    assert names.count("BOLUS_START") == DAYS * PRESSES
    assert not set(names) & set(schema.ACCESS_LOG_CODES)
    assert log[-1]["time_s"] - log[0]["time_s"] >= (DAYS - 1) * 86_400
    tallies = [e["b"] for e in pump.log(access=True) if e["name"] == "PB_REFUSED"]
    assert tallies[-1] == REFUSED  # every refused press counted
