# Alarm table and manager (first part: raise, clear, latch, stop delivery).
#
# Priorities follow IEC 60601-1-8 (high, medium, low); the standard leaves
# the mapping of conditions to priorities to the manufacturer, so the choice
# for each row is explained beside it. A latching alarm stays active after
# its condition goes away until a clinician clears it (CLEAR_ALARM); a
# non-latching one clears with its condition. An alarm that stops delivery
# goes through the app's single fail-stop path. Annunciation (tones, LED,
# acknowledge and re-sound) arrives with the safety issue.
#
# Names and ids are the schema's (protocol/schema.py ALARMS); this table adds
# the behaviour.

HIGH = 3
MEDIUM = 2
LOW = 1

# (id, priority, latching, stops delivery)
TABLE = (
    # 2 mL left (default): weeks of warning at usual rates; the pump goes on.
    (1, LOW, False, False),  # LOW_RESERVOIR
    # Nothing left to deliver: therapy has stopped (withdrawal risk), stays
    # until a refill.
    (2, HIGH, True, True),  # EMPTY_RESERVOIR
    # The governor saw more delivered than any allowed window: overdose risk.
    (3, HIGH, True, True),  # DOSE_LIMIT
    # The encoder disagreed with the steps commanded (monitors refine this).
    (4, MEDIUM, True, False),  # STROKE_MISMATCH
    # The refill showed a volume discrepancy beyond tolerance (SynchroMed
    # labelling: over-infusion is found at refill).
    (5, LOW, True, False),  # REFILL_DISCREPANCY
    # The journal could not be read: state unknown, so nothing is delivered.
    (6, HIGH, True, True),  # MEMORY
    # The pump restarted without a clean shutdown.
    (7, LOW, True, False),  # UNEXPECTED_RESET
)

LOW_RESERVOIR = 1
EMPTY_RESERVOIR = 2
DOSE_LIMIT = 3
STROKE_MISMATCH = 4
REFILL_DISCREPANCY = 5
MEMORY = 6
UNEXPECTED_RESET = 7

_PRIORITY = 1
_LATCHING = 2
_STOPS = 3


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


class Alarms:
    """Active alarms as a bit mask (bit id-1), plus their conditions."""

    def __init__(self, notify):
        # notify(alarm_id, raised) is called on every change (the app sends
        # the ALARM event and logs it).
        self.active = 0
        self._condition = 0
        self._notify = notify

    def raise_alarm(self, alarm_id, lasting=True):
        # lasting: the condition persists until condition_gone() (a low
        # reservoir); otherwise the alarm reports an event that is over once
        # it happened (a governor stop). Returns True if newly active.
        mask = bit(alarm_id)
        if lasting:
            self._condition |= mask
        if self.active & mask:
            return False
        self.active |= mask
        self._notify(alarm_id, 1)
        return True

    def condition_gone(self, alarm_id):
        # The condition cleared: a non-latching alarm clears with it.
        mask = bit(alarm_id)
        self._condition &= ~mask
        if self.active & mask and not _row(alarm_id)[_LATCHING]:
            self.active &= ~mask
            self._notify(alarm_id, 0)

    def clear(self, alarm_id):
        # A clinician clears an alarm; refused (False) while its condition
        # is still present.
        mask = bit(alarm_id)
        if not self.active & mask:
            return True
        if self._condition & mask:
            return False
        self.active &= ~mask
        self._condition &= ~mask
        self._notify(alarm_id, 0)
        return True

    def stopping(self):
        # The id of an active alarm that stops delivery, or 0.
        for row in TABLE:
            if row[_STOPS] and self.active & bit(row[0]):
                return row[0]
        return 0
