//! Intel TDX evidence: the DCAP quote v4 ([`quote`]).

pub mod quote;

pub use quote::{Quote, QuoteError, TdQuoteBody};
