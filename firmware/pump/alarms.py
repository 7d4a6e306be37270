# Alarm table and manager.
#
# Priorities follow IEC 60601-1-8 (high, medium, low); the standard leaves
# the mapping of conditions to priorities to the manufacturer, so the choice
# for each row is explained beside it. Columns:
#   latching  - stays active after its condition goes until a clinician
#               clears it (CLEAR_ALARM); a non-latching alarm clears with
#               its condition
#   stops     - delivery stops while it is active (through the app's single
#               fail-stop path: motor off first)
#   clearable - a clinician may clear it once its condition is gone; an
#               alarm that is not (end of service) only goes with its cause
# Annunciation: the pattern is the priority (the HAL plays it: high = 10
# pulses every 10 s and a red LED at 2 Hz, medium = 3 pulses every 25 s and
# a yellow LED at 0.5 Hz, low = 1 pulse an hour, as SynchroMed's non-critical
# beep, and a steady LED). Acknowledging silences the sound for at most
# ACK_SILENCE_MS; if the alarm is still active then, it sounds again
# (IEC 60601-1-8: an audio pause is never permanent; GIP: at most 2 min).
#
# Names and ids are the schema's (protocol/schema.py ALARMS, generated into
# protocol/table.py); a test checks the priorities below against it.

from micropython import const

# isort: off
from protocol.table import (
    ALARM_BATTERY_EOS as BATTERY_EOS,
    ALARM_BATTERY_ERI as BATTERY_ERI,
    ALARM_CLOCK_FAULT as CLOCK_FAULT,
    ALARM_DOSE_LIMIT as DOSE_LIMIT,
    ALARM_EMPTY_RESERVOIR as EMPTY_RESERVOIR,
    ALARM_ENCODER_FAILURE as ENCODER_FAILURE,
    ALARM_LEAK as LEAK,
    ALARM_LOST_STEPS as LOST_STEPS,
    ALARM_LOW_RESERVOIR as LOW_RESERVOIR,
    ALARM_MAX_ID,
    ALARM_MEMORY as MEMORY,
    ALARM_MOTOR_STALL as MOTOR_STALL,
    ALARM_OCCLUSION as OCCLUSION,
    ALARM_PARTIAL_OCCLUSION as PARTIAL_OCCLUSION,
    ALARM_REFILL_DISCREPANCY as REFILL_DISCREPANCY,
    ALARM_RUNAWAY as RUNAWAY,
    ALARM_SENSING_LIMITED as SENSING_LIMITED,
    ALARM_SENSOR_FAULT as SENSOR_FAULT,
    ALARM_SLOW_LEAK as SLOW_LEAK,
    ALARM_TIP_MIGRATION as TIP_MIGRATION,
    ALARM_UNEXPECTED_RESET as UNEXPECTED_RESET,
    ALARM_WATCHDOG_RESET as WATCHDOG_RESET,
)

# isort: on
from pump.ticks import ticks_add, ticks_diff

HIGH = const(3)
MEDIUM = const(2)
LOW = const(1)

ACK_SILENCE_MS = const(120_000)


COUNT = ALARM_MAX_ID  # the highest id (the schema's); known() says which ids exist

# (id, priority, latching, stops delivery, clearable)
TABLE = (
    # 2 mL left (default): weeks of warning at usual rates; the pump goes on.
    (LOW_RESERVOIR, LOW, False, False, True),
    # Nothing left to deliver: therapy has stopped (withdrawal risk); a
    # refill clears it.
    (EMPTY_RESERVOIR, HIGH, True, True, True),
    # The governor saw more delivered than any allowed window: overdose risk.
    (DOSE_LIMIT, HIGH, True, True, True),
    # The encoder saw fewer steps than commanded, stroke after stroke:
    # under-delivery, the head is wearing (SynchroMed: shaft wear 59 %).
    (LOST_STEPS, MEDIUM, True, False, True),
    # The refill showed a volume discrepancy beyond tolerance (SynchroMed
    # labelling: over-infusion is found at refill).
    (REFILL_DISCREPANCY, LOW, True, False, True),
    # Stored state or configuration failed its CRC: nothing is trusted.
    (MEMORY, HIGH, True, True, True),
    # The pump restarted without a clean shutdown: worth a look, not a stop.
    (UNEXPECTED_RESET, LOW, True, False, True),
    # The catheter is blocked: no drug reaches the patient; pressure and the
    # post-occlusion bolus grow with every stroke. Latching: relief alone
    # must not restart delivery unseen (GIP: post-occlusion bolus).
    (OCCLUSION, HIGH, True, True, True),
    # Flow is restricted but still passes: under-delivery, watch it.
    (PARTIAL_OCCLUSION, MEDIUM, False, False, True),
    # Drug leaves before the tip (torn or disconnected catheter): into the
    # pocket, not the intrathecal space. Stop.
    (LEAK, HIGH, True, True, True),
    # The rotor does not turn after bounded retries (SynchroMed: critical).
    (MOTOR_STALL, HIGH, True, True, True),
    # The motor moved more than commanded, or without a command: stop at once.
    (RUNAWAY, HIGH, True, True, True),
    # The encoder no longer reports movement that the pressure shows:
    # delivery can no longer be counted, so the governor is blind. Stop.
    (ENCODER_FAILURE, HIGH, True, True, True),
    # The pressure sensor is implausible: occlusion and leak detection are
    # blind, therapy itself is unaffected.
    (SENSOR_FAULT, MEDIUM, False, False, True),
    # Elective replacement: 90 days to end of service (SynchroMed:
    # non-critical, hourly beep).
    (BATTERY_ERI, LOW, False, False, True),
    # End of service: the pump stops (SynchroMed: 90 days after ERI).
    (BATTERY_EOS, HIGH, True, True, False),
    # The watchdog reset the pump: a task hung.
    (WATCHDOG_RESET, MEDIUM, True, False, True),
    # The ms timer that times strokes disagrees with the independent clock:
    # every rate may be off by that much. Stop (x3 fast is 3x the dose).
    (CLOCK_FAULT, HIGH, True, True, True),
    # The line as measured is too compliant or noisy for some per-stroke
    # detection (a silicone catheter, air after a refill): the clinician
    # should know; delivery is fine and must not stop. The
    # measured figures are in the log (LINE_LEARNED).
    (SENSING_LIMITED, LOW, False, False, True),
    # The catheter tip no longer sees CSF (no pressure component, no
    # posture changes): migrated out of the intrathecal space. Delivery goes
    # on (the drug still goes somewhere near); a clinician must check.
    (TIP_MIGRATION, MEDIUM, True, False, True),
    # The stroke response has been weak over hundreds of strokes: a leak
    # below the per-stroke limit (20-40 % of the flow). Under-delivery to be
    # confirmed (refill discrepancy, dye study); stopping an intrathecal
    # drug would do more harm than a partial dose.
    (SLOW_LEAK, MEDIUM, True, False, True),
)

_PRIORITY = const(1)
_LATCHING = const(2)
_STOPS = const(3)
_CLEARABLE = const(4)

LATCHING_MASK = 0
for _row_ in TABLE:
    if _row_[_LATCHING]:
        LATCHING_MASK |= 1 << (_row_[0] - 1)

ACTION_CLEARED = const(0)
ACTION_RAISED = const(1)
ACTION_ACKNOWLEDGED = const(2)
ACTION_RESOUNDED = const(3)


def _row(alarm_id):
    for row in TABLE:
        if row[0] == alarm_id:
            return row
    raise KeyError(alarm_id)


def bit(alarm_id):
    return 1 << (alarm_id - 1)


def known(alarm_id):
    for row in TABLE:
        if row[0] == alarm_id:
            return True
    return False


def priority(alarm_id):
    return _row(alarm_id)[_PRIORITY]


def stops(alarm_id):
    return _row(alarm_id)[_STOPS]


class Alarms:
    """Active alarms as bit masks (bit id-1), their conditions and silences."""

    def __init__(self, notify):
        # notify(alarm_id, action) is called on every change; the app sends
        # the ALARM event, logs it and re-drives the annunciator.
        self.active = 0
        self.acknowledged = 0
        self._condition = 0
        self._silence_until = [0] * (COUNT + 1)  # ticks, for acknowledged ones
        self._notify = notify

    def raise_alarm(self, alarm_id, lasting=True):
        # lasting: the condition persists until condition_gone() (a low
        # reservoir); otherwise the alarm reports an event that is over once
        # it happened (a governor stop). Returns True if newly active. A new
        # raise of an acknowledged alarm does not sound again before its
        # silence ends.
        mask = bit(alarm_id)
        if lasting:
            self._condition |= mask
        if self.active & mask:
            return False
        self.active |= mask
        self._notify(alarm_id, ACTION_RAISED)
        return True

    def condition_gone(self, alarm_id):
        # The condition cleared: a non-latching alarm clears with it.
        mask = bit(alarm_id)
        self._condition &= ~mask
        if self.active & mask and not _row(alarm_id)[_LATCHING]:
            self._clear(alarm_id)

    def clear(self, alarm_id):
        # A clinician clears an alarm; refused (False) while its condition
        # is still present or when the table says it cannot be cleared.
        mask = bit(alarm_id)
        if not self.active & mask:
            return True
        if self._condition & mask or not _row(alarm_id)[_CLEARABLE]:
            return False
        self._clear(alarm_id)
        return True

    def _clear(self, alarm_id):
        mask = bit(alarm_id)
        self.active &= ~mask
        self.acknowledged &= ~mask
        self._notify(alarm_id, ACTION_CLEARED)

    def acknowledge(self, alarm_id, now_ticks):
        # Silences an active alarm (0: all of them) for ACK_SILENCE_MS.
        # Returns the number acknowledged.
        count = 0
        until = ticks_add(now_ticks, ACK_SILENCE_MS)
        for row in TABLE:
            this = row[0]
            if (alarm_id == 0 or alarm_id == this) and self.active & bit(this):
                self.acknowledged |= bit(this)
                self._silence_until[this] = until
                self._notify(this, ACTION_ACKNOWLEDGED)
                count += 1
        return count

    def resound_due(self, now_ticks):
        # Ends the silences that ran out; returns the ticks of the next one
        # to end, or -1.
        following = -1
        for row in TABLE:
            this = row[0]
            if not self.acknowledged & bit(this):
                continue
            left = ticks_diff(self._silence_until[this], now_ticks)
            if left <= 0:
                self.acknowledged &= ~bit(this)
                self._notify(this, ACTION_RESOUNDED)
            elif following < 0 or left < ticks_diff(following, now_ticks):
                following = self._silence_until[this]
        return following

    def silence_left_ms(self, alarm_id, now_ticks):
        if not self.acknowledged & bit(alarm_id):
            return 0
        left = ticks_diff(self._silence_until[alarm_id], now_ticks)
        return left if left > 0 else 0

    def sounding(self):
        # The priority to sound (0: silence): the highest among the active
        # alarms that are not acknowledged.
        loudest = 0
        for row in TABLE:
            this = row[0]
            if self.active & bit(this) and not self.acknowledged & bit(this):
                if row[_PRIORITY] > loudest:
                    loudest = row[_PRIORITY]
        return loudest

    def showing(self):
        # The priority the LED shows: the highest active alarm, acknowledged
        # or not (acknowledging silences the sound, not the light).
        loudest = 0
        for row in TABLE:
            if self.active & bit(row[0]) and row[_PRIORITY] > loudest:
                loudest = row[_PRIORITY]
        return loudest

    def stopping(self):
        # The id of an active alarm that stops delivery, or 0.
        for row in TABLE:
            if row[_STOPS] and self.active & bit(row[0]):
                return row[0]
        return 0
