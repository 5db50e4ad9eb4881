import struct
# Minimal PE32+: DOS header, PE sig, COFF, optional header (16 data dirs), 2 sections, trailing data.
pe_off = 0x40
n_sec = 2
opt_size = 112 + 16*8
hdr_end = pe_off + 4 + 20 + opt_size + 40*n_sec
size_of_headers = 0x200
f = bytearray(size_of_headers)
f[0:2] = b'MZ'
struct.pack_into('<I', f, 0x3C, pe_off)
f[pe_off:pe_off+4] = b'PE\0\0'
struct.pack_into('<HHIIIHH', f, pe_off+4, 0x8664, n_sec, 0, 0, 0, opt_size, 0x22)
o = pe_off + 24
struct.pack_into('<H', f, o, 0x20B)
struct.pack_into('<I', f, o+16, 0x1000)        # entry
struct.pack_into('<Q', f, o+24, 0)             # image base
struct.pack_into('<II', f, o+32, 0x1000, 0x200) # section/file alignment
struct.pack_into('<I', f, o+56, 0x3000)        # size of image
struct.pack_into('<I', f, o+60, size_of_headers)
struct.pack_into('<I', f, o+64, 0xA5A5A5A5)    # checksum (excluded from the hash)
struct.pack_into('<H', f, o+68, 10)            # subsystem EFI application
struct.pack_into('<I', f, o+108, 16)
s = o + opt_size
# Section table deliberately not in file order: .data (raw at 0x400) listed before .text (raw at 0x200).
struct.pack_into('<8sIIIIIIHHI', f, s, b'.data', 0x100, 0x2000, 0x200, 0x400, 0,0,0,0, 0xC0000040)
struct.pack_into('<8sIIIIIIHHI', f, s+40, b'.text', 0x100, 0x1000, 0x200, 0x200, 0,0,0,0, 0x60000020)
text = bytes((i*7+1) & 0xFF for i in range(0x200))
data = bytes((i*13+5) & 0xFF for i in range(0x200))
f += text + data + b'TRAILING-DATA-AFTER-SECTIONS....'   # 32 bytes, 8-aligned
open('tiny_pe.efi','wb').write(f)
print(len(f))
