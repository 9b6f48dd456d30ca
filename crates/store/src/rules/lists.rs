//! Capped lists (a user's blocklist, the operator's sensitive words): when an entry may be
//! added.
//!
//! Pure functions of their arguments: no SQL, no I/O (see the module above).

/// Whether adding an entry to a list of `len` entries, at most `max`, is refused: only a new
/// entry is, and only when the list is full. An entry already there may always be set again.
pub fn full(len: u64, present: bool, max: u64) -> bool {
    !present && len >= max
}

#[cfg(test)]
mod tests {
    use super::full;

    #[test]
    fn only_a_new_entry_to_a_full_list_is_refused() {
        assert!(!full(2, false, 3));
        assert!(full(3, false, 3));
        assert!(full(4, false, 3));
        assert!(!full(3, true, 3));
        assert!(full(0, false, 0));
    }
}
