"""The rig port's client: device time, truth, faults, power, the plant (SPEC 16)."""

from __future__ import annotations

from typing import Any

from bench.link.client import LINE_NOMINAL, PLANT_NOMINAL, Client, _our_schema, fault_id, text
from protocol import schema
from protocol.table import (
    POWER_CUT_AFTER_BYTES,
    POWER_CUT_IN_MS,
    POWER_OFF,
    POWER_ON,
)


class RigClient(Client):
    """The rig port: device time, resets, power, the plant and its faults."""

    port_kind = schema.PORT_RIG

    def hello(self) -> dict[str, Any]:
        reply = self.request("RIG_HELLO", _our_schema())
        self._check_fingerprint(reply, "the rig")
        reply["rig_kind"] = text(reply["rig_kind"])
        return reply

    def advance(self, duration_ms: int, *, timeout_s: float | None = None) -> int:
        """Runs device time forward; returns the device time when it stopped.

        On the virtual board this is lockstep: the call returns once the
        firmware has run everything due up to that instant. The default
        deadline grows with the duration (a year of idle time takes seconds
        alone, a day of strokes a few; on a host busy with other boards
        several times that: a one-day ADVANCE missed a 10.5 s deadline at
        load 5). It only bounds a hang, so it is generous.
        """
        if timeout_s is None:
            timeout_s = 60.0 + duration_ms / 86_400_000 * 2.0
        return self.request("ADVANCE", {"duration_ms": duration_ms}, timeout_s=timeout_s)[
            "device_time_ms"
        ]

    def reset(self) -> None:
        self.request("RESET")

    def truth(self) -> dict[str, Any]:
        """What really happened, from the plant: ``pumped_nl`` (out of the reservoir),
        ``tip_nl`` (out of the catheter), ``tip_ng`` (the drug dose that left
        the tip, through the plant's own drug path), ``reservoir_nl``,
        ``steps`` the head turned, ``powered`` and ``journal_bytes`` written.
        """
        return self.request("TRUTH")

    def power(self, action: int, arg: int = 0) -> bool:
        """POWER (POWER_OFF, POWER_ON, POWER_CUT_AFTER_BYTES, POWER_CUT_IN_MS); returns powered."""
        return bool(self.request("POWER", {"action": action, "arg": arg})["powered"])

    def power_off(self) -> bool:
        return self.power(POWER_OFF)

    def power_on(self) -> bool:
        return self.power(POWER_ON)

    def cut_after_bytes(self, journal_bytes: int) -> bool:
        """Cuts power once the firmware has written that many more journal bytes."""
        return self.power(POWER_CUT_AFTER_BYTES, journal_bytes)

    def cut_in_ms(self, ms: int) -> bool:
        """Cuts power after that much device time (ms)."""
        return self.power(POWER_CUT_IN_MS, ms)

    def plant(self, **fields: int) -> None:
        """Sets the plant (docs/plant.md): any PLANT field, the others nominal.

        calibration_ppm (head error), catheter_nl and catheter_empty_nl,
        reservoir_nl, compliance_x10 (0.1 nL/mmHg), resistance_pct (of the
        Poiseuille value), noise_x10 and csf_x10 (0.1 mmHg).
        """
        unknown = set(fields) - set(PLANT_NOMINAL)
        if unknown:
            raise ValueError(f"no PLANT field {', '.join(sorted(unknown))}")
        self.request("PLANT", {**PLANT_NOMINAL, **fields})

    def line(self, **fields: int) -> None:
        """Sets the line (rig LINE, docs/plant.md section 1): material (1
        silicone, 2 polyurethane, 3 braided; 0 keeps PLANT's compliance),
        modulus_kpa, air_nl, air_dissolve_s, inertance, occlusion_site,
        ambient_x10 and daily_life; the others as LINE_NOMINAL. Send PLANT
        first: a material's compliance follows the catheter's length.
        """
        unknown = set(fields) - set(LINE_NOMINAL)
        if unknown:
            raise ValueError(f"no LINE field {', '.join(sorted(unknown))}")
        self.request("LINE", {**LINE_NOMINAL, **fields})

    def inject_fault(self, fault: int | str, param: int = 0, onset_ms: int = 0) -> None:
        """Injects a plant fault (schema FAULTS, by id or name) ``onset_ms`` from now."""
        self.request(
            "INJECT_FAULT", {"fault": fault_id(fault), "param": param, "onset_ms": onset_ms}
        )

    def clear_fault(self, fault: int | str = 0) -> None:
        """Clears a plant fault (0: all of them)."""
        self.request("CLEAR_FAULT", {"fault": fault_id(fault) if fault else 0})

    def fill(self, reservoir_nl: int, conc_ug_ml: int = 0) -> int:
        """Empties the real reservoir and fills it to ``reservoir_nl`` of drug at
        ``conc_ug_ml`` (0: saline; the rig's dose truth, TRUTH ``tip_ng``, counts
        it); returns what was really left (nL), the figure a clinician would
        withdraw at a refill."""
        return self.request("FILL", {"reservoir_nl": reservoir_nl, "conc_ug_ml": conc_ug_ml})[
            "withdrawn_nl"
        ]
