//! Partition assignment for cluster groups.

use std::collections::BTreeSet;

use super::GroupState;
use crate::topic::{Topic, TopicId, TopicPartition};

/// Spreads the partitions of each topic over the members subscribed to it,
/// round-robin, continuing the rotation across topics so that many
/// single-partition topics still spread out. Deterministic for a given
/// membership, so every rebalance of the same members gives the same result.
pub(crate) fn round_robin<T>(
    st: &mut GroupState<T>,
    union: &BTreeSet<TopicId>,
    topics: &[std::sync::Arc<Topic<T>>],
) {
    for m in st.members.values_mut() {
        m.assignment.clear();
    }
    let mut rotation = 0usize;
    for &tid in union {
        let subs: Vec<u64> = st
            .members
            .iter()
            .filter(|(_, m)| m.subscription.contains(&tid))
            .map(|(&id, _)| id)
            .collect();
        if subs.is_empty() {
            continue;
        }
        let n = topics[tid.0 as usize].partitions.len();
        for p in 0..n {
            let member = subs[(p + rotation) % subs.len()];
            if let Some(m) = st.members.get_mut(&member) {
                m.assignment.push(TopicPartition {
                    topic: tid,
                    partition: p as u32,
                });
            }
        }
        rotation += n;
    }
}
