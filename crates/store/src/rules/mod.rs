//! The product rules of the writes that have them, decided once for every backend.
//!
//! A backend reads a small snapshot of what a rule depends on inside its write transaction,
//! calls the rule here, and applies what it returns (a refusal, or the effects to write,
//! including the content of the message that records the change) in the same transaction.
//!
//! Architecture invariant: everything in this module is a pure function of its arguments. It
//! does no I/O, reads no clock and names no SQL; the SQL crates hold none of these rules and
//! build no message content themselves.

pub mod amend;
pub mod conversations;
pub mod e2ee;
pub mod groups;
pub mod keys;
pub mod lists;
pub mod push;
