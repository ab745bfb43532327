use super::follower::{last_fetched_epoch, truncation_for_diverging, EpochLookup};
use super::leader::{diverging_epoch, AlterFailure, LeaderState};

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
    l.on_alter_sent(vec![1, 2], 7);
    assert_eq!(
        l.wanted_isr(40_000, 30_000, 90, None),
        None,
        "one change at a time"
    );
    // Until committed, the removed member still counts for the high watermark.
    assert_eq!(l.maximal_isr(), vec![1, 2, 3]);
    l.on_alter_accepted(7, 11, vec![1, 2]);
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
    l.on_alter_sent(vec![1, 2, 3], 7);
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

#[test]
fn an_expansion_whose_outcome_is_unknown_still_holds_the_high_watermark() {
    // replication-one-way-to-leader 0x73: the leader (1) asked to add 3
    // back; its controller resigned before committing and answered
    // NOT_CONTROLLER, but the next controller committed the change. The
    // leader had dropped the pending change and moved the high watermark
    // past what 3 held; 3, in the committed ISR, was then elected and the
    // others truncated acknowledged writes to its end.
    let mut l = leader(&[1, 2]);
    l.on_follower_fetch(2, 120, 120, 1_000);
    l.on_follower_fetch(3, 120, 120, 1_000);
    assert_eq!(
        l.wanted_isr(1_000, 30_000, 120, Some(3)),
        Some(vec![1, 2, 3])
    );
    l.on_alter_sent(vec![1, 2, 3], 7);
    // 3 is cut off; the leader appends on.
    l.on_follower_fetch(2, 200, 200, 2_000);
    assert_eq!(l.high_watermark(200), Some(120));
    // The controller resigns without answering: the outcome is unknown.
    l.on_alter_failed(7, AlterFailure::of(Some(41), None), 2_100);
    assert_eq!(l.maximal_isr(), vec![1, 2, 3], "still pending");
    assert_eq!(
        l.high_watermark(200),
        Some(120),
        "3 may be in the committed ISR"
    );
    assert_eq!(
        l.wanted_isr(2_050, 30_000, 120, None),
        None,
        "one change at a time"
    );
    // It is sent again once its backoff has passed.
    assert_eq!(l.isr_to_resend(2_050), None);
    assert_eq!(l.isr_to_resend(2_100), Some(vec![1, 2, 3]));
    l.on_alter_sent(vec![1, 2, 3], 8);
    assert_eq!(l.isr_to_resend(3_000), None, "in flight");
    // A stale answer to the first request changes nothing.
    l.on_alter_failed(7, AlterFailure::NotApplied, 0);
    assert_eq!(l.maximal_isr(), vec![1, 2, 3]);
    // The new controller applied it already: the partition epoch is older
    // than its own; the metadata settles it.
    l.on_alter_failed(8, AlterFailure::of(Some(0), Some(95)), 3_000);
    assert_eq!(l.isr_to_resend(10_000), None, "waits for the metadata");
    assert_eq!(l.high_watermark(200), Some(120));
    l.on_partition_update(11, vec![1, 2, 3], vec![1, 2, 3], 3_100);
    assert_eq!(l.pending, None);
    assert_eq!(l.high_watermark(200), Some(120));
}

#[test]
fn only_a_refusal_that_says_not_applied_drops_a_pending_change() {
    let failures = [
        (None, None, AlterFailure::Retry),        // no answer
        (Some(41), None, AlterFailure::Retry),    // NOT_CONTROLLER
        (Some(77), None, AlterFailure::Retry),    // STALE_BROKER_EPOCH
        (Some(0), Some(41), AlterFailure::Retry), // a stale controller
        (Some(0), Some(-1), AlterFailure::Retry),
        (Some(0), Some(74), AlterFailure::AwaitMetadata), // FENCED_LEADER_EPOCH
        (Some(0), Some(95), AlterFailure::AwaitMetadata), // INVALID_UPDATE_VERSION
        (Some(0), Some(42), AlterFailure::AwaitMetadata), // INVALID_REQUEST
        (Some(0), Some(3), AlterFailure::AwaitMetadata),  // UNKNOWN_TOPIC_OR_PARTITION
        (Some(0), Some(107), AlterFailure::NotApplied),   // INELIGIBLE_REPLICA
        (Some(0), Some(55), AlterFailure::NotApplied),    // OPERATION_NOT_ATTEMPTED
    ];
    for (top, partition, expected) in failures {
        assert_eq!(
            AlterFailure::of(top, partition),
            expected,
            "{top:?} {partition:?}"
        );
        let mut l = leader(&[1, 2]);
        l.on_follower_fetch(3, 100, 100, 1_000);
        l.on_alter_sent(vec![1, 2, 3], 1);
        l.on_alter_failed(1, expected, 1_100);
        let pending = expected != AlterFailure::NotApplied;
        assert_eq!(l.pending.is_some(), pending, "{expected:?}");
        assert_eq!(l.maximal_isr().contains(&3), pending, "{expected:?}");
        assert_eq!(
            l.isr_to_resend(1_100).is_some(),
            expected == AlterFailure::Retry,
            "{expected:?}"
        );
    }
}
