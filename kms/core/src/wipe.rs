//! Byte buffers that may hold secrets (decrypted TLS records, requests and responses carrying
//! key material): grow and shift them without leaving copies behind.
//!
//! `Vec::extend_from_slice` may reallocate, and the allocator then frees the old block with its
//! contents intact; `Vec::drain(..n)` shifts the tail down and leaves the old tail's bytes past
//! the new length. [`extend`] grows into a fresh block and wipes the old one, [`drain_front`]
//! wipes what it removes and what the shift leaves behind. Dropping such a buffer is the
//! owner's business (`zeroize` it, or wrap it in `zeroize::Zeroizing`).

use alloc::vec::Vec;

use zeroize::Zeroize;

/// Smallest block a buffer grows to.
const MIN_CAPACITY: usize = 256;

/// Appends `data` to `buf`. If `buf` must grow, its contents move to a new block (at least
/// twice as large) and the old block is wiped before it is freed.
pub fn extend(buf: &mut Vec<u8>, data: &[u8]) {
    reserve(buf, data.len());
    buf.extend_from_slice(data);
}

/// Moves all of `other` to the end of `buf` (as [`extend`]) and wipes `other`.
pub fn append(buf: &mut Vec<u8>, other: &mut Vec<u8>) {
    extend(buf, other);
    other.zeroize();
    other.clear();
}

/// Makes room for `additional` more bytes without leaving the current contents in a freed block.
pub fn reserve(buf: &mut Vec<u8>, additional: usize) {
    let needed = buf.len().saturating_add(additional);
    if needed <= buf.capacity() {
        return;
    }
    let capacity = needed
        .max(buf.capacity().saturating_mul(2))
        .max(MIN_CAPACITY);
    let mut grown = Vec::with_capacity(capacity);
    grown.extend_from_slice(buf);
    // `zeroize` on a Vec wipes its whole capacity, not only its length.
    buf.zeroize();
    *buf = grown;
}

/// Removes the first `n` bytes of `buf` (all of it if shorter): they are wiped, the rest is
/// shifted down, and the bytes the shift leaves past the new end are wiped too.
pub fn drain_front(buf: &mut Vec<u8>, n: usize) {
    let len = shift_out(buf, n);
    buf.truncate(len);
}

/// [`drain_front`] on the bytes themselves: shifts `bytes[n..]` to the front, wipes everything
/// after it, and returns the new length.
fn shift_out(bytes: &mut [u8], n: usize) -> usize {
    let n = n.min(bytes.len());
    let len = bytes.len() - n;
    bytes.copy_within(n.., 0);
    if let Some(stale) = bytes.get_mut(len..) {
        stale.zeroize();
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_moves_to_a_new_block_and_keeps_contents() {
        let mut buf = Vec::with_capacity(4);
        buf.extend_from_slice(b"abcd");
        let old = buf.as_ptr();
        extend(&mut buf, b"efgh");
        assert_eq!(buf, b"abcdefgh");
        assert_ne!(buf.as_ptr(), old, "grew in a new block");
        assert!(buf.capacity() >= MIN_CAPACITY);
        // With room left, no reallocation.
        let now = buf.as_ptr();
        extend(&mut buf, b"ij");
        assert_eq!((buf.as_ptr(), buf.as_slice()), (now, &b"abcdefghij"[..]));
    }

    #[test]
    fn shifting_out_wipes_what_the_shift_leaves_behind() {
        let mut bytes = *b"secret-plaintext";
        let len = shift_out(&mut bytes, 7);
        assert_eq!(&bytes[..len], b"plaintext");
        assert_eq!(&bytes[len..], &[0u8; 7]);
        // Shifting out everything (or more) wipes everything.
        let mut bytes = *b"abc";
        assert_eq!(shift_out(&mut bytes, 10), 0);
        assert_eq!(bytes, [0; 3]);
    }

    #[test]
    fn drain_front_keeps_the_rest_in_order() {
        let mut buf = b"GET / HTTP/1.1\r\n\r\nnext".to_vec();
        drain_front(&mut buf, 18);
        assert_eq!(buf, b"next");
        drain_front(&mut buf, 0);
        assert_eq!(buf, b"next");
        drain_front(&mut buf, 9);
        assert!(buf.is_empty());
    }

    #[test]
    fn append_wipes_the_source() {
        let mut a = b"ab".to_vec();
        let mut b = b"cd".to_vec();
        append(&mut a, &mut b);
        assert_eq!(a, b"abcd");
        assert!(b.is_empty());
    }
}
