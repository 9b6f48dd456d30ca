//! The order of an end-to-end encrypted conversation's MLS group: the server, as the Delivery
//! Service (RFC 9750 §5), takes the first commit for each epoch and refuses the others, so every
//! member sees one sequence of epochs, in the conversation's seq order.
//!
//! Pure functions of their arguments: no SQL, no I/O (see the module above).

use crate::{EpochRefusal, MlsKind, MlsOrdering};

/// A conversation's MLS group as the server knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEpoch {
    pub group_id: Vec<u8>,
    pub epoch: u64,
}

/// Whether a message of the conversation whose group is `state` (`None`: none yet) is stored,
/// and the group after it (`Some` when it changes):
/// - a commit for the current epoch is stored and starts the next epoch; one for any other is
///   refused (`Stale`), as another came first;
/// - the first commit for epoch 0 starts the conversation's group (its creator's commit that
///   adds the other members); with no group, nothing else is stored (`NoGroup`);
/// - a proposal must be for the current epoch;
/// - an application message may be for the current epoch or an earlier one (sent before its
///   sender saw the latest commit; members keep a few past epochs' keys to read it), never a
///   later one;
/// - every message must be of the conversation's group (`OtherGroup`).
pub fn order(
    state: Option<&GroupEpoch>,
    m: &MlsOrdering,
) -> Result<Option<GroupEpoch>, EpochRefusal> {
    let Some(state) = state else {
        return if m.kind == MlsKind::Commit && m.epoch == 0 {
            Ok(Some(GroupEpoch {
                group_id: m.group_id.clone(),
                epoch: 1,
            }))
        } else {
            Err(EpochRefusal::NoGroup)
        };
    };
    if state.group_id != m.group_id {
        return Err(EpochRefusal::OtherGroup);
    }
    let stale = Err(EpochRefusal::Stale {
        current: state.epoch,
    });
    match m.kind {
        MlsKind::Commit if m.epoch == state.epoch => Ok(Some(GroupEpoch {
            group_id: state.group_id.clone(),
            epoch: state.epoch + 1,
        })),
        MlsKind::Proposal if m.epoch == state.epoch => Ok(None),
        MlsKind::Application if m.epoch <= state.epoch => Ok(None),
        _ => stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(group: u8, epoch: u64, kind: MlsKind) -> MlsOrdering {
        MlsOrdering {
            group_id: vec![group],
            epoch,
            kind,
        }
    }

    fn at(epoch: u64) -> GroupEpoch {
        GroupEpoch {
            group_id: vec![1],
            epoch,
        }
    }

    #[test]
    fn the_first_commit_of_an_epoch_wins() {
        use MlsKind::*;
        assert_eq!(order(None, &m(1, 0, Commit)), Ok(Some(at(1))));
        assert_eq!(order(None, &m(1, 3, Commit)), Err(EpochRefusal::NoGroup));
        assert_eq!(
            order(None, &m(1, 0, Application)),
            Err(EpochRefusal::NoGroup)
        );
        // Another device started a group of its own at the same time: refused.
        assert_eq!(
            order(Some(&at(1)), &m(2, 0, Commit)),
            Err(EpochRefusal::OtherGroup)
        );
        assert_eq!(
            order(Some(&at(1)), &m(1, 0, Commit)),
            Err(EpochRefusal::Stale { current: 1 })
        );
        assert_eq!(order(Some(&at(1)), &m(1, 1, Commit)), Ok(Some(at(2))));
        assert_eq!(
            order(Some(&at(2)), &m(1, 1, Commit)),
            Err(EpochRefusal::Stale { current: 2 })
        );
        assert_eq!(order(Some(&at(2)), &m(1, 2, Proposal)), Ok(None));
        assert_eq!(
            order(Some(&at(2)), &m(1, 1, Proposal)),
            Err(EpochRefusal::Stale { current: 2 })
        );
        assert_eq!(order(Some(&at(2)), &m(1, 1, Application)), Ok(None));
        assert_eq!(order(Some(&at(2)), &m(1, 2, Application)), Ok(None));
        assert_eq!(
            order(Some(&at(2)), &m(1, 3, Application)),
            Err(EpochRefusal::Stale { current: 2 })
        );
    }
}
