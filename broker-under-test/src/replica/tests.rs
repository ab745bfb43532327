use super::follower::{last_fetched_epoch, truncation_for_diverging, EpochLookup};
use super::leader::{diverging_epoch, LeaderState};

/// A log as (epoch, start offset) entries and a log end.
struct Epochs(Vec<(i32, i64)>, i64);

impl EpochLookup for Epochs {
    fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let Some(&(latest, _)) = self.0.last() else {
            return (-1, -1);
        };
        if epoch == latest {
            return (latest, self.1);
        }
        if epoch > latest {
            return (-1, -1);
        }
        let higher = self
            .0
            .iter()
            .find(|(e, _)| *e > epoch)
            .expect("below latest");
        let floor = self.0.iter().rev().find(|(e, _)| *e <= epoch);
        (floor.map_or(epoch, |f| f.0), higher.1)
    }
    fn log_end(&self) -> i64 {
        self.1
    }
}

fn leader(isr: &[i32]) -> LeaderState {
    LeaderState::new(1, 5, 10, vec![1, 2, 3], isr.to_vec(), 100, 1_000)
}

#[test]
fn high_watermark_waits_for_every_isr_member_to_fetch() {
    let mut l = leader(&[1, 2, 3]);
    assert_eq!(l.high_watermark(120), None);
    l.on_follower_fetch(2, 110, 120, 1_010);
    assert_eq!(
        l.high_watermark(120),
        None,
        "3 has not fetched in this epoch"
    );
    l.on_follower_fetch(3, 105, 120, 1_020);
    assert_eq!(l.high_watermark(120), Some(105));
    // The leader's own (durable) end bounds it too.
    assert_eq!(l.high_watermark(101), Some(101));
}

#[test]
fn a_replica_outside_the_isr_does_not_hold_the_high_watermark() {
    let mut l = leader(&[1, 2]);
    l.on_follower_fetch(2, 118, 120, 1_010);
    assert_eq!(l.high_watermark(120), Some(118));
}

#[test]
fn a_lagging_member_is_dropped_after_the_lag_time_and_a_caught_up_one_is_added() {
    let mut l = leader(&[1, 2, 3]);
    l.on_follower_fetch(2, 120, 120, 1_000);
    l.on_follower_fetch(3, 90, 120, 1_000);
    // Within the lag window nothing changes.
    assert_eq!(l.wanted_isr(20_000, 30_000, 90, None), None);
    l.on_follower_fetch(2, 120, 120, 40_000);
    assert_eq!(l.wanted_isr(40_000, 30_000, 90, None), Some(vec![1, 2]));
    l.on_alter_sent(vec![1, 2], 40_000);
    assert_eq!(
        l.wanted_isr(40_000, 30_000, 90, None),
        None,
        "one change at a time"
    );
    // Until committed, the removed member still counts for the high watermark.
    assert_eq!(l.maximal_isr(), vec![1, 2, 3]);
    l.on_alter_accepted(11, vec![1, 2]);
    assert_eq!(l.high_watermark(120), Some(120));
    // 3 catches up: it reaches the high watermark and the epoch start.
    l.on_follower_fetch(3, 120, 120, 41_000);
    assert_eq!(
        l.wanted_isr(41_000, 30_000, 120, Some(3)),
        Some(vec![1, 2, 3])
    );
}

#[test]
fn a_pending_expansion_counts_at_once() {
    let mut l = leader(&[1, 2]);
    l.on_follower_fetch(2, 120, 120, 1_000);
    l.on_follower_fetch(3, 100, 120, 1_000);
    l.on_alter_sent(vec![1, 2, 3], 1_000);
    assert_eq!(l.high_watermark(120), Some(100));
}

#[test]
fn caught_up_as_of_the_previous_fetch_counts() {
    let mut l = leader(&[1, 2]);
    l.on_follower_fetch(2, 100, 110, 1_000); // behind
    l.on_follower_fetch(2, 110, 130, 25_000); // reached where the leader was at 1_000... at 25_000's previous answer
    assert_eq!(l.follower(2).map(|f| f.last_caught_up_ms), Some(1_000));
    l.on_follower_fetch(2, 130, 140, 50_000);
    assert_eq!(l.follower(2).map(|f| f.last_caught_up_ms), Some(25_000));
    assert_eq!(l.wanted_isr(50_000, 30_000, 130, None), None);
    assert_eq!(l.wanted_isr(56_000, 30_000, 130, None), Some(vec![1]));
}

#[test]
fn stale_partition_updates_are_ignored() {
    let mut l = leader(&[1, 2, 3]);
    l.on_partition_update(9, vec![1, 2, 3], vec![1], 2_000);
    assert_eq!(l.isr, vec![1, 2, 3]);
    l.on_partition_update(11, vec![1, 2, 3], vec![1, 3], 2_000);
    assert_eq!(l.isr, vec![1, 3]);
}

#[test]
fn diverging_epoch_cases() {
    // Leader: epoch 1 from 0, epoch 3 from 50, epoch 5 from 80; end 100.
    let leader = Epochs(vec![(1, 0), (3, 50), (5, 80)], 100);
    assert_eq!(diverging_epoch(&leader, -1, 0), None);
    assert_eq!(diverging_epoch(&leader, 5, 95), None);
    assert_eq!(diverging_epoch(&leader, 3, 50), None);
    // The follower has epoch 3 entries past 50's end (80).
    assert_eq!(diverging_epoch(&leader, 3, 90), Some((3, 80)));
    // The follower has epoch 2, which the leader never had.
    assert_eq!(diverging_epoch(&leader, 2, 60), Some((1, 50)));
}

#[test]
fn follower_truncation_cases() {
    // Follower: epoch 1 from 0, epoch 2 from 50 (never on the leader); end 70.
    let follower = Epochs(vec![(1, 0), (2, 50)], 70);
    // Leader says: diverging at epoch 1, which ends at 50 on the leader.
    assert_eq!(truncation_for_diverging(&follower, 1, 50), (50, true));
    // Same epoch, the follower's ends earlier than the leader's.
    let short = Epochs(vec![(1, 0), (3, 40)], 45);
    assert_eq!(truncation_for_diverging(&short, 3, 80), (45, true));
    // The follower's history for the leader's epoch is another epoch: truncate
    // to where its own ends and ask again.
    let other = Epochs(vec![(1, 0), (2, 30), (4, 60)], 70);
    assert_eq!(truncation_for_diverging(&other, 3, 55), (60, false));
    assert_eq!(last_fetched_epoch(0, |_| Some(1)), -1);
    assert_eq!(last_fetched_epoch(70, |o| (o == 69).then_some(4)), 4);
}

#[test]
fn a_replica_is_added_back_only_on_its_own_fetch() {
    // 3 left the ISR; its last fetch (before it was cut off) showed it at
    // the high watermark. The periodic check must not add it back on that
    // old fetch: only a fetch from 3 itself may.
    let mut l = leader(&[1, 2]);
    l.on_follower_fetch(3, 120, 120, 1_000);
    l.on_follower_fetch(2, 120, 120, 5_000);
    assert_eq!(l.wanted_isr(5_000, 30_000, 120, None), None);
    assert_eq!(l.wanted_isr(5_000, 30_000, 120, Some(2)), None);
    assert_eq!(
        l.wanted_isr(5_000, 30_000, 120, Some(3)),
        Some(vec![1, 2, 3])
    );
}
