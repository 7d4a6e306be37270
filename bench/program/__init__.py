"""Therapy programs: program files (TOML) to PROGRAM fields and back; the volume a program
prescribes.
"""
