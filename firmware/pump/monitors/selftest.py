# Periodic self-test of what the pump trusts between boots: the active
# program's bytes against the CRC they were confirmed with, and the journal's
# current snapshot slot and delta log (what a reboot would recover). GIP
# (docs/sources.md [55]): periodic RAM/ROM CRC, a CPU test every 60 minutes. A
# failure is MEMORY (stops delivery): corrupted configuration or state is
# not acted on.
#
# The journal check is Journal.verify_slots() -> bool (pump/journal.py:
# re-reads the current slot and its log with every CRC and the sequence
# chain, as recover() would).
#
# Not a hot path: binascii.crc32 returns a big integer on the rp2 above 2**30,
# and reading the journal back allocates a few views.

from binascii import crc32

from micropython import const

from pump.monitors import MEMORY

PERIOD_S = const(3_600)  # GIP: CPU test every 60 min; the CRCs are checked as often


def program_ok(raw, crc):
    # The program's bytes still have the CRC they were confirmed with
    # (pump/program.py: crc32(raw) & 0xFFFFFFFF).
    return crc32(raw) & 0xFFFFFFFF == crc & 0xFFFFFFFF


def journal_ok(journal):
    # The journal's current state reads back whole (see the header).
    return bool(journal.verify_slots())


def run(program_raw, program_crc, journal):
    # One self-test: MEMORY if anything failed, else 0. program_raw None:
    # no program to check (a new pump).
    if program_raw is not None and not program_ok(program_raw, program_crc):
        return MEMORY
    if journal is not None and not journal_ok(journal):
        return MEMORY
    return 0
