#!/usr/bin/env python3
"""MRTD of a TDVF image, written from the specifications as a cross-check of attest::measure::tdx::mrtd.

usage: ovmf-config/tdvf-mrtd.py OVMF.fd      -> prints the MRTD (96 hex digits) and the TDVF sections

Sources (no code from attest or another project):
- Intel "TDX Virtual Firmware Design Guide" rev 1.01, section 11 "TDVF Metadata": the OVMF footer GUID
  table entry e47a6535-984a-4798-865e-4685a7bf8ec2 holds a u32 offset, from the end of the image, of the
  TDVF_DESCRIPTOR ("TDVF", u32 length, u32 version = 1, u32 number of sections), followed by
  TDVF_SECTION {u32 DataOffset, u32 RawDataSize, u64 MemoryAddress, u64 MemoryDataSize, u32 Type,
  u32 Attributes}; attribute bit 0 = MR.EXTEND, bit 1 = PAGE.AUG.
- Intel "TDX Module Base Architecture Specification", "MRTD": TDH.MEM.PAGE.ADD extends MRTD with a
  128-byte buffer holding "MEM.PAGE.ADD" at offset 0 and the GPA (u64) at offset 16; TDH.MR.EXTEND
  with a 128-byte buffer holding "MR.EXTEND" and the GPA, then the 256 bytes of the chunk. MRTD is the
  SHA-384 over everything extended, in order.
- The VMM (QEMU KVM_TDX_INIT_MEM_REGION with KVM_TDX_MEASURE_MEMORY_REGION) adds each section that is
  not PAGE.AUG page by page; for an MR.EXTEND section each page is followed by its 16 chunks.
"""
import hashlib
import struct
import sys
import uuid

FOOTER_TABLE = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d").bytes_le
TDX_METADATA = uuid.UUID("e47a6535-984a-4798-865e-4685a7bf8ec2").bytes_le


def footer_entries(img):
    end = len(img) - 0x20                      # the table ends where the 32-byte reset area starts
    if img[end - 16:end] != FOOTER_TABLE:
        raise SystemExit("no OVMF footer GUID table")
    total = struct.unpack_from("<H", img, end - 18)[0]
    start = end - total
    pos = end - 18                             # entries walk backwards from the table header
    out = {}
    while pos > start:
        guid = img[pos - 16:pos]
        size = struct.unpack_from("<H", img, pos - 18)[0]
        out[guid] = img[pos - size:pos - 18]
        pos -= size
    return out


def sections(img):
    off = struct.unpack_from("<I", footer_entries(img)[TDX_METADATA], 0)[0]
    d = len(img) - off
    sig, length, version, n = struct.unpack_from("<4sIII", img, d)
    assert sig == b"TDVF" and version == 1 and length == 16 + 32 * n, (sig, version, length, n)
    return [struct.unpack_from("<IIQQII", img, d + 16 + 32 * i) for i in range(n)]


def mrtd(img):
    h = hashlib.sha384()
    for data_off, raw, gpa, size, typ, attr in sections(img):
        if attr & 2:                           # PAGE.AUG: added later, not measured
            continue
        data = img[data_off:data_off + raw].ljust(size, b"\0")
        for page in range(0, size, 4096):
            h.update(b"MEM.PAGE.ADD".ljust(16, b"\0") + struct.pack("<Q", gpa + page).ljust(112, b"\0"))
            if attr & 1:
                for c in range(page, page + 4096, 256):
                    h.update(b"MR.EXTEND".ljust(16, b"\0") + struct.pack("<Q", gpa + c).ljust(112, b"\0"))
                    h.update(data[c:c + 256])
    return h.hexdigest()


if __name__ == "__main__":
    image = open(sys.argv[1], "rb").read()
    for s in sections(image):
        print("section data_offset=%#x raw=%#x gpa=%#x size=%#x type=%d attr=%#x" % s, file=sys.stderr)
    print(mrtd(image))
