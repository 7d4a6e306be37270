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
#   delivered twice. "Running" means started (D_BOLUS_BEGIN) and not ended
#   by its D_BOLUS_CLOSE record, even if replaying its last stroke reached
#   the target: the power went before its end was journalled and logged.
#
# Journal first, then the event log: every record below is appended before
# the log entry that reports it, so the log never claims state a reset
# forgot. The two files cannot change in one write, so a cut can land
# between a record and its entry; the bolus records carry the index their
# entry gets, and recovery reads the log there to finish the step:
# - D_BOLUS_BEGIN without its BOLUS_START entry: the bolus never started
#   (it is the commit point; nothing was delivered or ACKed before it). It
#   is dropped, with the patient-bolus grant the same record carries, so the
#   lockout never counts a grant the log does not show;
# - D_BOLUS_CLOSE without its entry: the app logs the entry at boot.

import struct

from micropython import const

from pump import governor as governormod
from pump import logcodes
from pump import path as pathmod
from pump import program as programmod
from pump import reservoir as reservoirmod

# A change of the snapshot's layout changes _SNAPSHOT_VERSION: a snapshot of
# any other version is refused (_restore() returns False), never read as
# this layout.
_SNAPSHOT_VERSION = const(4)

# Delta kinds and their payload formats.
D_STROKE_BEGIN = const(1)  # kind B, time_s I
D_STROKE_END = const(2)  # kind B, moved H, volume nL I, time_s I
# 3, 4, 5 are not used: kinds are never reused, so that a record of another
# layout cannot read as one of these
D_RUNNING = const(6)  # running B
D_ALARMS = const(7)  # active alarm mask I
# bolus id H, bolus kind B, target nL I, index of its BOLUS_START entry I,
# patient-bolus grant time_s I (NO_GRANT for the other kinds)
D_BOLUS_BEGIN = const(8)
# bolus id H, delivered nL I, log code of its end B, index of that entry I
D_BOLUS_CLOSE = const(9)

_STROKE_BEGIN = "<BI"
_STROKE_END = "<BHII"
_BOLUS_BEGIN = "<HBIII"
_BOLUS_CLOSE = "<HIBI"
NO_GRANT = 0xFFFFFFFF
_FLAG = "<B"
_MASK = "<I"

# Snapshot layout after the program bytes and the packed reservoir and
# governor: therapy scalars, then the patient-bolus ring, then the held
# clock offsets (offset, device second its hold ends) and the ERI date.
_THERAPY = "<BBiIIIIHBHIIIHIH"
_HEAD_SIZE = struct.calcsize(_THERAPY)
_HELD = "<II"


class Recovered:
    """What replay learned besides the state it restored."""

    def __init__(self):
        self.had_state = False  # a snapshot or deltas were found
        self.interrupted_bolus_id = -1
        self.interrupted_bolus_nl = 0
        self.open_stroke = False  # a stroke began but its end was lost
        # a bolus end journalled whose log entry never landed: (code, id, nL)
        self.unlogged_end = None
        self.dropped_bolus_id = -1  # journalled, never logged: never started
        # the active program's PROGRAM_ACTIVE entry is not in the log
        self.unlogged_program = False


class Persist:
    """Packs and replays the app's state into and out of the journal."""

    def __init__(self, journal, therapy, reservoir, governor, drive, battery, path):
        self.battery = battery  # its ERI date survives resets
        self.journal = journal
        self.therapy = therapy
        self.reservoir = reservoir
        self.governor = governor
        self.drive = drive
        self.alarms_mask = 0
        self.boot_count = 0
        self.next_bolus_id = 1
        self.path = path  # the drug path (pump/path.py)
        # the index the active program's PROGRAM_ACTIVE entry got (or gets)
        # and its soft-override mask (-1: none, a stopped pump from new)
        self.program_index = 0xFFFFFFFF
        self.program_mask = 0
        self._delta = bytearray(32)
        # preallocated views of _delta, one per record size (no allocation
        # before and after each stroke)
        self._views = [memoryview(self._delta)[:size] for size in range(16)]
        self._grant_s = NO_GRANT  # a patient-bolus grant waiting for its bolus
        self._stroke_kind = -1  # the stroke in flight (its begin journalled), or -1
        self._stroke_s = 0
        # recovery state
        self._found = Recovered()
        self._open_kind = -1
        self._open_time = 0
        self._snapshot_ok = True
        self._program_restored = _nothing
        self._forget_boluses()

    def _forget_boluses(self):
        # What replay knows of the newest bolus records.
        self._bolus_open = False  # begun and not closed
        self._begin_index = -1  # its BOLUS_START entry (-1: known logged)
        self._begin_grant = False  # the begin record also granted it
        self._overwritten = 0  # the patient-bolus ring slot that grant took
        self._close_index = -1  # the last close record's entry (-1: none)
        self._close_code = 0
        self._close_id = 0
        self._close_nl = 0

    # --- deltas (hot path: before and after every stroke) ------------------
    def stroke_begin(self, kind, now_s):
        self._stroke_kind = kind
        self._stroke_s = now_s
        struct.pack_into(_STROKE_BEGIN, self._delta, 0, kind, now_s)
        self._append(D_STROKE_BEGIN, 5)

    def stroke_end(self, kind, moved, volume_nl, now_s):
        self._stroke_kind = -1
        struct.pack_into(_STROKE_END, self._delta, 0, kind, moved, volume_nl, now_s)
        self._append(D_STROKE_END, 11)

    def bolus_start(self, bolus_id, kind, target_nl, log_index):
        # One record: the bolus, and the patient-bolus grant if one waits
        # (patient_bolus()); log_index: the index its BOLUS_START entry gets.
        grant = self._grant_s
        self._grant_s = NO_GRANT
        struct.pack_into(_BOLUS_BEGIN, self._delta, 0, bolus_id, kind, target_nl, log_index, grant)
        self._append(D_BOLUS_BEGIN, 15)

    def bolus_end(self, bolus_id, delivered_nl, code, log_index):
        # code: the log code of its end (BOLUS_DONE, BOLUS_CANCELLED or
        # BOLUS_INTERRUPTED), log_index: the index that entry gets.
        struct.pack_into(_BOLUS_CLOSE, self._delta, 0, bolus_id, delivered_nl, code, log_index)
        self._append(D_BOLUS_CLOSE, 11)

    def patient_bolus(self, now_s):
        # A patient-bolus grant: journalled by the bolus_start() that follows,
        # in the same record, so that a grant never stands without its bolus.
        self._grant_s = now_s

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
        # Packed in place into the journal's own snapshot buffer: a snapshot
        # of about 1.2 KB never needs a second copy on the heap.
        t = self.therapy
        area = self.journal.snapshot_area()
        struct.pack_into(
            _THERAPY,
            area,
            0,
            _SNAPSHOT_VERSION,
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
            self.program_index,
            self.program_mask,
        )
        o = _HEAD_SIZE
        area[o : o + programmod.SIZE] = t.program.raw
        o += programmod.SIZE
        o += self.reservoir.pack_into(area, o)
        o += self.governor.pack_into(area, o)
        o += self.path.pack_into(area, o)
        for when in t.pb_times:
            struct.pack_into("<I", area, o, when)
            o += 4
        # the holds of recent clock changes: a reset within the day after a
        # change must not let the new clock alone replay a high-rate span
        for i in range(len(t.held_offset_s)):
            struct.pack_into(_HELD, area, o, t.held_offset_s[i], t.held_until_s[i])
            o += 8
        o += self.battery.pack_into(area, o)
        self.journal.snapshot(area[:o])
        if self._stroke_kind >= 0:
            # A snapshot taken while a stroke moves (REFILL, CONFIRM, ...)
            # starts a new delta log: the stroke's begin goes into it again,
            # or a cut before its end would lose the stroke instead of
            # counting it (never under-count).
            self.stroke_begin(self._stroke_kind, self._stroke_s)

    def _restore(self, data):
        t = self.therapy
        head = _HEAD_SIZE
        values = struct.unpack_from(_THERAPY, data, 0)
        if values[0] != _SNAPSHOT_VERSION:
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
            self.program_index,
            self.program_mask,
        ) = values
        offset = head
        t.program = programmod.Program.from_bytes(data[offset : offset + programmod.SIZE])
        offset += programmod.SIZE
        size = reservoirmod.PACKED_SIZE
        if not self.reservoir.unpack(data[offset : offset + size]):
            return False
        offset += size
        size = governormod.PACKED_SIZE
        if not self.governor.unpack(data[offset : offset + size]):
            return False
        offset += size
        size = pathmod.PACKED_SIZE
        if not self.path.unpack(data[offset : offset + size]):
            return False
        offset += size
        ring = struct.unpack_from("<%dI" % len(t.pb_times), data, offset)
        for i in range(len(ring)):
            t.pb_times[i] = ring[i]
        offset += 4 * len(ring)
        for i in range(len(t.held_offset_s)):
            t.held_offset_s[i], t.held_until_s[i] = struct.unpack_from(_HELD, data, offset)
            offset += 8
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
        self._forget_boluses()
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
        if self._bolus_open:
            begun = (t.bolus_id | t.bolus_kind << 16) if t.bolus_kind else -1
            if (
                self._begin_index >= 0
                and t.bolus_delivered_nl == 0
                and not self._logged(self._begin_index, logcodes.BOLUS_START, begun)
            ):
                # Its BOLUS_START never landed: the request was not ACKed
                # and no stroke ran. It never started, nor did its grant.
                found.dropped_bolus_id = t.bolus_id
                if self._begin_grant:
                    # undo the grant, and the ring slot it overwrote (a full
                    # ring would count the dropped grant's time as the oldest)
                    t.pb_count -= 1
                    t.pb_times[t.pb_count % len(t.pb_times)] = self._overwritten
            else:
                found.interrupted_bolus_id = t.bolus_id
                found.interrupted_bolus_nl = t.bolus_delivered_nl
            t.cancel_bolus()
        elif self._close_index >= 0 and not self._logged(
            self._close_index, self._close_code, self._close_id
        ):
            found.unlogged_end = (self._close_code, self._close_id, self._close_nl)
        if self.program_index != 0xFFFFFFFF and not self._logged(
            self.program_index, logcodes.PROGRAM_ACTIVE, t.program.crc
        ):
            found.unlogged_program = True
        return found

    def _logged(self, index, code, a):
        # Whether the event log holds entry `index` with this code and a.
        journal = self.journal
        if index < journal.oldest_event():
            return True  # aged out: it was logged
        entries = journal.events(index, 1)
        if not entries:
            return False
        entry = entries[0]
        return entry[0] == index and entry[2] == code and (entry[3] - a) & 0xFFFFFFFF == 0

    def _on_snapshot(self, snapshot):
        if snapshot is not None and not self._restore(snapshot):
            self._snapshot_ok = False
        # a snapshot is written only after the log entries of what it holds
        self._bolus_open = self.therapy.bolus_kind != 0
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
        elif kind == D_BOLUS_BEGIN:
            bolus_id, bolus_kind, target, index, grant = struct.unpack(_BOLUS_BEGIN, payload)
            self._begin(bolus_id, bolus_kind, target)
            self._begin_index = index
            self._begin_grant = grant != NO_GRANT
            if self._begin_grant:
                self._overwritten = t.pb_times[t.pb_count % len(t.pb_times)]
                t.record_patient_bolus(grant)
        elif kind == D_BOLUS_CLOSE:
            bolus_id, delivered, code, index = struct.unpack(_BOLUS_CLOSE, payload)
            t.bolus_kind = 0
            self._bolus_open = False
            self._close_index = index
            self._close_code = code
            self._close_id = bolus_id
            self._close_nl = delivered
        elif kind == D_RUNNING:
            t.running = bool(struct.unpack(_FLAG, payload)[0])
        elif kind == D_ALARMS:
            self.alarms_mask = struct.unpack(_MASK, payload)[0]

    def _begin(self, bolus_id, bolus_kind, target):
        t = self.therapy
        t.bolus_kind = bolus_kind
        t.bolus_id = bolus_id
        t.bolus_target_nl = target
        t.bolus_delivered_nl = 0
        self.next_bolus_id = (bolus_id + 1) & 0xFFFF or 1
        self._bolus_open = True
        self._begin_index = -1
        self._begin_grant = False

    def _apply(self, kind, volume_nl, now_s):
        self.therapy.stroke_done(kind, volume_nl)
        self.reservoir.consume(volume_nl)
        self.governor.record(now_s, self.path.push(volume_nl))
        self.path.tip_changed = False


def _nothing(_program):
    pass
