//! Key custody: named operators and their roles ([`roles`], [`operators`]), dual control of the
//! operations that touch the keys' custody ([`access`]), how a station is unlocked without a
//! shared passphrase ([`unlock`]), split knowledge of a key among security officers ([`split`]),
//! and taking a station to this model ([`enable`]).

pub mod access;
pub mod card;
pub mod enable;
pub mod operators;
pub mod roles;
pub mod split;
pub mod unlock;

pub use operators::{Approval, LoggedIn, OperatorRecord, Statement};
pub use roles::{Operation, OperatorName, Role};
pub use unlock::{CustodyFile, Policy};
