# What the pump keeps across a reset, and how it is rebuilt.
#
# The journal (pump/journal.py) stores opaque bytes; this module decides
# which: a snapshot of the whole therapy state (active program, reservoir,
# dose-governor windows, totals, patient-bolus history, latched alarms) and
# small delta records written before and after every stroke and at every
# bolus step. Recovery = the snapshot + the deltas after it, replayed here.
#
# Rules the replay keeps (DESIGN section 4, "Power loss"):
# - a stroke whose "before" record is there but not its "after" record may
#   or may not have moved: it is counted as a full nominal stroke, so the
#   accounting errs by at most one stroke and never towards under-counting
#   what the patient may have received (the governor sees it);
# - a bolus that was running when the power went is never resumed: it is
#   cancelled and logged with what it had delivered, so it can never be
#   delivered twice.

import struct

from pump import program as programmod

SNAPSHOT_VERSION = 2  # 2: the battery monitor's ERI date follows the ring

# Delta kinds and their payload formats.
D_STROKE_BEGIN = 1  # kind B, time_s I
D_STROKE_END = 2  # kind B, moved H, volume nL I, time_s I
D_BOLUS_START = 3  # bolus id H, bolus kind B, target nL I
D_BOLUS_END = 4  # bolus id H, delivered nL I
D_PATIENT_BOLUS = 5  # time_s I
D_RUNNING = 6  # running B
D_ALARMS = 7  # active alarm mask I

_STROKE_BEGIN = "<BI"
_STROKE_END = "<BHII"
_BOLUS_START = "<HBI"
_BOLUS_END = "<HI"
_TIME = "<I"
_FLAG = "<B"
_MASK = "<I"

# Snapshot layout after the program bytes and the packed reservoir and
# governor: therapy scalars, then the patient-bolus ring.
_THERAPY = "<BBiIIIIHBHIIIH"


class Recovered:
    """What replay learned besides the state it restored."""

    def __init__(self):
        self.had_state = False  # a snapshot or deltas were found
        self.interrupted_bolus_id = -1
        self.interrupted_bolus_nl = 0
        self.open_stroke = False  # a stroke began but its end was lost


class Persist:
    """Packs and replays the app's state into and out of the journal."""

    def __init__(self, journal, therapy, reservoir, governor, drive, battery):
        self.battery = battery  # its ERI date survives resets
        self.journal = journal
        self.therapy = therapy
        self.reservoir = reservoir
        self.governor = governor
        self.drive = drive
        self.alarms_mask = 0
        self.boot_count = 0
        self.next_bolus_id = 1
        self._delta = bytearray(32)
        # preallocated views of _delta, one per record size (no allocation
        # before and after each stroke)
        self._views = [memoryview(self._delta)[:size] for size in range(12)]
        # recovery state
        self._found = Recovered()
        self._open_kind = -1
        self._open_time = 0
        self._snapshot_ok = True
        self._program_restored = _nothing

    # --- deltas (hot path: before and after every stroke) ------------------
    def stroke_begin(self, kind, now_s):
        struct.pack_into(_STROKE_BEGIN, self._delta, 0, kind, now_s)
        self._append(D_STROKE_BEGIN, 5)

    def stroke_end(self, kind, moved, volume_nl, now_s):
        struct.pack_into(_STROKE_END, self._delta, 0, kind, moved, volume_nl, now_s)
        self._append(D_STROKE_END, 11)

    def bolus_start(self, bolus_id, kind, target_nl):
        struct.pack_into(_BOLUS_START, self._delta, 0, bolus_id, kind, target_nl)
        self._append(D_BOLUS_START, 7)

    def bolus_end(self, bolus_id, delivered_nl):
        struct.pack_into(_BOLUS_END, self._delta, 0, bolus_id, delivered_nl)
        self._append(D_BOLUS_END, 6)

    def patient_bolus(self, now_s):
        struct.pack_into(_TIME, self._delta, 0, now_s)
        self._append(D_PATIENT_BOLUS, 4)

    def running(self, running):
        struct.pack_into(_FLAG, self._delta, 0, 1 if running else 0)
        self._append(D_RUNNING, 1)

    def alarms(self, mask):
        self.alarms_mask = mask
        struct.pack_into(_MASK, self._delta, 0, mask)
        self._append(D_ALARMS, 4)

    def _append(self, kind, size):
        self.journal.append(kind, self._views[size])

    # --- snapshot -----
    def snapshot(self):
        t = self.therapy
        head = struct.pack(
            _THERAPY,
            SNAPSHOT_VERSION,
            1 if t.running else 0,
            t.clock_offset_s,
            t.delivered_nl,
            t.basal_delivered_nl,
            t.bolus_total_nl,
            t.pb_count,
            self.next_bolus_id,
            t.bolus_kind,
            t.bolus_id,
            t.bolus_target_nl,
            t.bolus_delivered_nl,
            self.alarms_mask,
            self.boot_count,
        )
        ring = struct.pack("<%dI" % len(t.pb_times), *t.pb_times)
        self.journal.snapshot(
            head
            + t.program.raw
            + self.reservoir.pack()
            + self.governor.pack()
            + ring
            + self.battery.pack()
        )

    def _restore(self, data):
        t = self.therapy
        head = struct.calcsize(_THERAPY)
        values = struct.unpack_from(_THERAPY, data, 0)
        if values[0] != SNAPSHOT_VERSION:
            return False
        (
            _version,
            running,
            t.clock_offset_s,
            t.delivered_nl,
            t.basal_delivered_nl,
            t.bolus_total_nl,
            t.pb_count,
            self.next_bolus_id,
            bolus_kind,
            bolus_id,
            bolus_target,
            bolus_delivered,
            self.alarms_mask,
            self.boot_count,
        ) = values
        offset = head
        t.program = programmod.Program.from_bytes(data[offset : offset + programmod.SIZE])
        offset += programmod.SIZE
        size = len(self.reservoir.pack())
        if not self.reservoir.unpack(data[offset : offset + size]):
            return False
        offset += size
        size = len(self.governor.pack())
        if not self.governor.unpack(data[offset : offset + size]):
            return False
        offset += size
        ring = struct.unpack_from("<%dI" % len(t.pb_times), data, offset)
        for i in range(len(ring)):
            t.pb_times[i] = ring[i]
        offset += 4 * len(ring)
        # the ERI date: a reset must not restart the 90-day countdown
        if not self.battery.unpack(data[offset:]):
            return False
        t.running = bool(running)
        t.bolus_kind = bolus_kind
        t.bolus_id = bolus_id
        t.bolus_target_nl = bolus_target
        t.bolus_delivered_nl = bolus_delivered
        return True

    # --- recovery -----
    def recover(self, program_restored):
        # Returns a Recovered, or None when the stored state is unreadable
        # (the app then raises the MEMORY alarm and delivers nothing).
        # program_restored(program) runs between the snapshot and the replay
        # of the deltas, so that the governor replays under its real limits.
        # The deltas stream through _replay one by one: a long log costs no
        # memory.
        self._found = Recovered()
        self._open_kind = -1
        self._open_time = 0
        self._program_restored = program_restored
        self._snapshot_ok = True
        snapshot, count = self.journal.recover(self._replay, self._on_snapshot)
        if not self._snapshot_ok:
            return None
        found = self._found
        found.had_state = snapshot is not None or count > 0
        t = self.therapy
        if self._open_kind >= 0:
            # The power went during a stroke: count it as a full stroke.
            found.open_stroke = True
            self._apply(self._open_kind, self.drive.nominal_stroke_nl(), self._open_time)
        if t.bolus_kind:
            found.interrupted_bolus_id = t.bolus_id
            found.interrupted_bolus_nl = t.bolus_delivered_nl
            t.cancel_bolus()
        return found

    def _on_snapshot(self, snapshot):
        if snapshot is not None and not self._restore(snapshot):
            self._snapshot_ok = False
        self._program_restored(self.therapy.program)

    def _replay(self, kind, payload):
        t = self.therapy
        if not self._snapshot_ok:
            return
        if kind == D_STROKE_BEGIN:
            self._open_kind, self._open_time = struct.unpack(_STROKE_BEGIN, payload)
        elif kind == D_STROKE_END:
            stroke_kind, _moved, volume, now_s = struct.unpack(_STROKE_END, payload)
            self._apply(stroke_kind, volume, now_s)
            self._open_kind = -1
        elif kind == D_BOLUS_START:
            bolus_id, bolus_kind, target = struct.unpack(_BOLUS_START, payload)
            t.bolus_kind = bolus_kind
            t.bolus_id = bolus_id
            t.bolus_target_nl = target
            t.bolus_delivered_nl = 0
            self.next_bolus_id = (bolus_id + 1) & 0xFFFF or 1
        elif kind == D_BOLUS_END:
            t.bolus_kind = 0
        elif kind == D_PATIENT_BOLUS:
            t.record_patient_bolus(struct.unpack(_TIME, payload)[0])
        elif kind == D_RUNNING:
            t.running = bool(struct.unpack(_FLAG, payload)[0])
        elif kind == D_ALARMS:
            self.alarms_mask = struct.unpack(_MASK, payload)[0]

    def _apply(self, kind, volume_nl, now_s):
        self.therapy.stroke_done(kind, volume_nl)
        self.reservoir.consume(volume_nl)
        self.governor.record(now_s, volume_nl)


def _nothing(_program):
    pass
