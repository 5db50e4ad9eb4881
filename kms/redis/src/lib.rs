//! Redis-with-Findex store for the KMS: RESP client, Findex index, sealed object records (no_std + alloc)
