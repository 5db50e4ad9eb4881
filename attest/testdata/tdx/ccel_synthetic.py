#!/usr/bin/env python3
"""Writes ccel_synthetic.bin: a TD event log (TCG PC Client PFP rev 1.05 §10.2 crypto-agile format, CC MR
indices as in the TDVF Design Guide §10.1.2) with the event sequence of a TDVF direct boot, SHA-384 only,
followed by 0xFF fill as in the CCEL area. Replayed by Intel's pytdxmeasure 0.0.9 (PyPI, from intel/tdx-tools)
to obtain the RTMRs `eventlog::tests::synthetic_ccel_matches_pytdxmeasure` expects.

usage: python3 ccel_synthetic.py OUT.bin
"""
import hashlib
import struct
import sys

def sha384(b):
    return hashlib.sha384(b).digest()

# First event: SHA-1 format, EV_NO_ACTION, the Spec ID event (one algorithm: SHA-384, 48 bytes).
spec = b"Spec ID Event03\0" + struct.pack("<IBBBB", 0, 0, 2, 0, 2)
spec += struct.pack("<I", 1) + struct.pack("<HH", 0x000C, 48) + b"\0"
log = struct.pack("<II", 0, 3) + b"\0" * 20 + struct.pack("<I", len(spec)) + spec

def event(mr_index, etype, data, digest=None):
    d = digest if digest is not None else sha384(data)
    return (struct.pack("<IIIH", mr_index, etype, 1, 0x000C) + d +
            struct.pack("<I", len(data)) + data)

EV_POST_CODE, EV_SEPARATOR, EV_EVENT_TAG = 0x1, 0x4, 0x6
EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000001, 0x80000003
EV_EFI_ACTION, EV_EFI_HANDOFF_TABLES2 = 0x80000007, 0x8000000B
events = [
    (1, EV_EFI_HANDOFF_TABLES2, b"\x09TdxTable" + b"\0" * 16),   # RTMR0: TD HOB / config
    (1, EV_POST_CODE, b"ACPI DATA"),
    (1, EV_EFI_VARIABLE_DRIVER_CONFIG, b"SecureBoot variable (synthetic)"),
    (1, EV_SEPARATOR, b"\0\0\0\0"),
    # RTMR1: the kernel's Authenticode digest (data: an image load event, digest not of the data).
    (2, EV_EFI_BOOT_SERVICES_APPLICATION, b"image load event", sha384(b"kms.efi authenticode stand-in")),
    (2, EV_EFI_ACTION, b"Calling EFI Application from Boot Option"),
    (2, EV_SEPARATOR, b"\0\0\0\0"),
    (2, EV_EFI_ACTION, b"Exit Boot Services Invocation"),
    (2, EV_EFI_ACTION, b"Exit Boot Services Returned with Success"),
    # RTMR2: the command line (UCS-2 with NUL), as an EV_EVENT_TAG.
    (3, EV_EVENT_TAG, "ckms.ip=dhcp\0".encode("utf-16-le")),
    # RTMR3: one runtime extension.
    (4, EV_EVENT_TAG, b"runtime"),
]
for e in events:
    log += event(*e)
log += b"\xff" * 512
open(sys.argv[1], "wb").write(log)
