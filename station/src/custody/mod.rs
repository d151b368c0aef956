//! Key custody: split knowledge of a key among security officers ([`split`]).

pub mod split;
