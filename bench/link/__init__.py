"""The link to a board: framing over any pyserial URL, the pump and rig clients, role keys, the
bench's errors, the fault:// and forge:// URL handlers.
"""
