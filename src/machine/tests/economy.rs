//! Economy: the fewest datagrams the exchange needs, and retries that read
//! the situation (README, "Why READY is instant" and "Retransmission").

use super::*;

/// The datagrams of `net.log` sent in `[from, to]`.
fn sent_between(net: &Net, from: Instant, to: Instant) -> Vec<(Instant, usize, usize, Message)> {
    net.log
        .iter()
        .filter(|(t, ..)| *t >= from && *t <= to)
        .copied()
        .collect()
}

/// Starts nodes `ids` one a millisecond apart.
fn start_one_a_millisecond(net: &mut Net, ids: std::ops::RangeInclusive<usize>) {
    for i in ids {
        net.start(i, params(), 100 + i as u64);
        net.run_until(net.now + MS);
    }
}

/// Asserts that after `after`, `asked` (times of heartbeats to one peer)
/// come no closer than the interval's jitter allows.
fn assert_once_an_interval(asked: &[Instant], after: Instant) {
    for w in asked.windows(2).filter(|w| w[0] >= after) {
        assert!(
            w[1] - w[0] >= params().interval * 3 / 4,
            "asked again {:?} after the last time: {asked:?}",
            w[1] - w[0]
        );
    }
}

/// The questions (heartbeats that ask) node `from` sent node `to` from
/// `since` on: when, and their sequence numbers.
fn questions(net: &Net, from: usize, to: usize, since: Instant) -> Vec<(Instant, u64)> {
    net.log
        .iter()
        .filter(|(t, f, to_, m)| *t >= since && *f == from && *to_ == to && m.ask)
        .map(|(t, _, _, m)| (*t, m.seq))
        .collect()
}

/// When node `from` sent to node `to`.
fn sent_to(net: &Net, from: usize, to: usize) -> Vec<Instant> {
    net.log
        .iter()
        .filter(|(_, f, t, _)| *f == from && *t == to)
        .map(|(t, ..)| *t)
        .collect()
}

#[test]
fn a_peer_never_heard_is_asked_once_an_interval_once_nothing_has_been_lost() {
    // Sixteen peers start and answer node 0's questions: its network loses
    // nothing, so the one it has never heard has not started, and after
    // the first retry (which always goes) is asked once an interval: four
    // times in 5 s, where the quick schedule from 100 ms would ask six
    // times. Its start heartbeats everyone: all READY a round trip later.
    let t0 = Instant::now();
    let mut net = Net::new(18, t0);
    start_one_a_millisecond(&mut net, 0..=16);
    net.run_until(t0 + Duration::from_secs(5));
    let asked = sent_to(&net, 0, 17);
    assert_eq!(asked[0], t0, "{asked:?}");
    assert!(asked.len() <= 4, "{asked:?}");
    assert_once_an_interval(&asked, asked[1]);
    let last_start = net.now;
    net.start(17, params(), 999);
    net.run_until(last_start + Duration::from_millis(5));
    net.assert_all_ready_within(last_start, net.latency * 3);
}

#[test]
fn a_network_seen_to_lose_keeps_the_quick_schedule_for_a_peer_never_heard() {
    // Node 0's answers to node 1 are lost for a while, so its question to
    // a peer that is up goes unanswered and is asked again: its network
    // loses. The seventeen answers that follow, each at the first asking,
    // are more than the sixteen that would otherwise do but fewer than the
    // 32 it now takes, so the peer never heard is still asked on the quick
    // schedule, from 100 ms: at least four times in the first second.
    let t0 = Instant::now();
    let mut net = Net::new(20, t0);
    net.cut.push((0, 1));
    net.start(0, params(), 100);
    net.start(1, params(), 101);
    net.run_until(t0 + Duration::from_millis(30));
    net.cut.clear();
    net.run_until(t0 + Duration::from_millis(100));
    let node = net.nodes[0].as_ref().unwrap();
    assert!(node.peers[0].exchanged());
    assert_eq!(
        node.loss.needed(),
        2 * retransmit::CLEAN_ANSWERS,
        "a loss seen"
    );
    start_one_a_millisecond(&mut net, 2..=18);
    net.run_until(t0 + Duration::from_secs(1));
    let asked = sent_to(&net, 0, 19);
    assert!(asked.len() >= 4, "{asked:?}");
}

#[test]
fn a_retry_answered_by_the_answer_to_the_first_question_is_no_loss() {
    // Sixteen peers start and answer node 0 at the first asking. Then node
    // 1 starts and stops at once, with node 0's question in its socket:
    // node 0 asks again, and node 1, running again, answers the first
    // question. The retry was impatient, nothing was lost: node 0 still
    // takes the peer it never heard for one not started, and asks it once
    // an interval (after its first retry, which went while the late answer
    // had made its round-trip estimate, and with it the time it gives a
    // loss to show, long).
    let t0 = Instant::now();
    let mut net = Net::new(19, t0);
    net.start(0, params(), 100);
    start_one_a_millisecond(&mut net, 2..=17);
    net.run_until(t0 + Duration::from_millis(30));
    let t1 = net.now;
    net.start(1, params(), 101);
    net.run_until(t1 + net.latency * 3 / 2);
    net.pause(1);
    net.run_until(t1 + Duration::from_millis(40));
    net.resume(1);
    net.run_until(t0 + Duration::from_secs(5));
    let asked = questions(&net, 0, 1, t1);
    assert!(asked.len() >= 2, "node 0 did not ask node 1 again");
    let (first, retry) = (asked[0].1, asked[1].0);
    let answered = net
        .log
        .iter()
        .find(|(_, from, to, m)| (*from, *to) == (1, 0) && m.acked == first)
        .map(|(t, ..)| *t);
    assert!(
        answered.is_some_and(|t| t > retry),
        "node 1 did not answer the first question after the retry"
    );
    let asked = sent_to(&net, 0, 18);
    assert!(asked.len() >= 3, "{asked:?}");
    assert_once_an_interval(&asked, t0 + Duration::from_millis(200));
}

#[test]
fn a_first_retry_waits_while_peers_are_still_starting() {
    // Sixteen peers start and answer node 0: its network loses nothing.
    // Then 22 more start 10 ms apart, over 210 ms, longer than a first
    // retry's wait (100 ms): while peers keep starting, one never heard is
    // most likely still to come, so node 0 asks none of them again before
    // it starts. Its start heartbeat is the only datagram each of them was
    // sent before it started (on the quick schedule, those starting after
    // 100 ms would each have cost a retry). The peer that never starts is
    // still asked a first time again once the starts have stopped for that
    // wait (less its jitter), as a newcomer whose start heartbeat was lost
    // would need.
    let t0 = Instant::now();
    let n = 40;
    let mut net = Net::new(n, t0);
    start_one_a_millisecond(&mut net, 0..=16);
    net.run_until(t0 + Duration::from_millis(40));
    assert!(net.nodes[0].as_ref().unwrap().lossless(net.now));
    let mut started = Vec::new();
    for k in 17..n - 1 {
        started.push((k, net.now));
        net.start(k, params(), 100 + k as u64);
        net.run_until(net.now + Duration::from_millis(10));
    }
    let last_start = started.last().unwrap().1;
    for &(k, at) in &started {
        let before: Vec<_> = sent_to(&net, 0, k)
            .into_iter()
            .filter(|&t| t < at)
            .collect();
        assert_eq!(before, [t0], "node 0 to node {k}, started at {at:?}");
    }
    let quiet = params().initial_rto();
    net.run_until(last_start + quiet * 2);
    let never = sent_to(&net, 0, n - 1);
    assert_eq!(never.len(), 2, "{never:?}");
    assert!(never[1] >= last_start + quiet * 3 / 4, "{never:?}");
    assert!(never[1] <= last_start + net.latency + quiet, "{never:?}");
}

#[test]
fn a_newcomer_with_evidence_still_sends_its_first_retry() {
    // Node 18 has run alone for 10 s: it asks the others once an
    // interval. Node 0 starts, its start heartbeat to node 18 is lost,
    // and seventeen peers start after it and answer it: it holds its
    // network for one that loses nothing before its first retry comes
    // due. That first retry goes all the same, once the starts have
    // stopped for its wait, and is what introduces the two: all READY
    // long before node 18's next heartbeat to node 0.
    let t0 = Instant::now();
    let mut net = Net::new(19, t0);
    net.start(18, params(), 999);
    net.run_until(t0 + Duration::from_secs(10));
    let t1 = net.now;
    net.cut.push((0, 18));
    net.start(0, params(), 100);
    net.cut.clear();
    start_one_a_millisecond(&mut net, 1..=17);
    net.run_until(t1 + Duration::from_millis(40));
    assert!(net.nodes[0].as_ref().unwrap().lossless(net.now));
    net.run_until(t1 + Duration::from_millis(400));
    net.assert_all_ready_within(t1, Duration::from_millis(150));
}

#[test]
fn a_newcomer_whose_start_heartbeat_was_lost_asks_again_on_the_quick_schedule() {
    // Nineteen peers have run for 10 s; the twentieth starts, and the link
    // between it and the last of them loses everything for 150 ms: its
    // start heartbeat and its first retry. Eighteen peers answer its start
    // heartbeat, but it had heard none of them before, so their answers
    // say nothing about loss (its questions lost on the way to them would
    // have gone unseen): the one it never heard is asked a second time on
    // the quick schedule, and all are READY well before the interval after
    // which the old peer's own heartbeat would come.
    let t0 = Instant::now();
    let n = 20;
    let mut net = Net::all_but_last(n, t0);
    let start = net.now;
    net.cut.extend([(n - 1, n - 2), (n - 2, n - 1)]);
    net.start(n - 1, params(), 999);
    net.run_until(start + Duration::from_millis(150));
    net.cut.clear();
    assert_eq!(questions(&net, n - 1, n - 2, start).len(), 2);
    net.run_until(start + Duration::from_millis(600));
    net.assert_all_ready_within(start, Duration::from_millis(450));
}

#[test]
fn a_late_starters_exchange_takes_three_datagrams_per_peer() {
    let t0 = Instant::now();
    let n = 8;
    let mut net = Net::all_but_last(n, t0);
    let last_start = net.now;
    net.start(n - 1, params(), 999);
    net.run_until(last_start + Duration::from_millis(5));
    let last_ready = net.last_ready();
    let with_newcomer: Vec<_> = sent_between(&net, last_start, last_ready)
        .into_iter()
        .filter(|&(_, a, b, _)| a == n - 1 || b == n - 1)
        .collect();
    // Its heartbeat, a heartbeat carrying the acknowledgement, the
    // acknowledgement of that: three per peer, none of them a separate
    // acknowledgement of a heartbeat that was answered by one.
    assert_eq!(with_newcomer.len(), 3 * (n - 1), "{with_newcomer:#?}");
    for j in 0..n - 1 {
        let pair: Vec<_> = with_newcomer
            .iter()
            .filter(|&&(_, a, b, _)| a == j || b == j)
            .map(|&(_, a, _, m)| (a, m.ask, m.ack().is_some()))
            .collect();
        assert_eq!(
            pair,
            [(n - 1, true, false), (j, true, true), (n - 1, false, true)],
            "peer {j}"
        );
    }
}

#[test]
fn peers_started_together_exchange_in_four_datagrams_per_pair() {
    let t0 = Instant::now();
    let n = 16;
    let mut net = Net::started(n, t0);
    net.run_until(t0 + Duration::from_millis(5));
    let last_ready = net.last_ready();
    let sent = sent_between(&net, t0, last_ready).len();
    // Both heartbeats cross; each is answered by an acknowledgement that
    // does not ask again, since the question is on its way.
    assert_eq!(sent, 4 * n * (n - 1) / 2);
}

#[test]
fn once_exchanged_a_pair_sends_one_heartbeat_each_way_per_interval_carrying_the_ack() {
    let t0 = Instant::now();
    let n = 5;
    let mut net = Net::started(n, t0);
    net.run_until(t0 + Duration::from_secs(1));
    assert!(net.ready_at.iter().all(Option::is_some));
    let from = net.now;
    let window = params().interval * 20;
    net.run_until(from + window);
    let steady = sent_between(&net, from, from + window);
    for (k, (t, a, b, m)) in steady.iter().enumerate() {
        assert_eq!(m.kind, Kind::Heartbeat, "{t:?} {a}->{b}: {m:?}");
        assert!(!m.ask, "{a}->{b} asks after READY: {m:?}");
        // It acknowledges the latest heartbeat that reached it since its
        // previous one to that peer, and nothing twice.
        let previous = steady[..k]
            .iter()
            .rev()
            .find(|s| s.1 == *a && s.2 == *b)
            .map_or(from, |s| s.0);
        let owed = steady
            .iter()
            .filter(|s| s.1 == *b && s.2 == *a)
            .filter(|s| s.0 + net.latency > previous && s.0 + net.latency <= *t)
            .map(|s| (s.3.incarnation, s.3.seq))
            .next_back();
        if steady[..k].iter().any(|s| s.1 == *a && s.2 == *b) {
            assert_eq!(m.ack(), owed, "{t:?} {a}->{b}: {m:?}");
        }
    }
    // At most one per interval each way (jitter fires up to a quarter early).
    let most = (window.as_secs_f64() / (params().interval.as_secs_f64() * 0.75)).ceil() as usize;
    // And all of a node's heartbeats of an interval leave in one round: one
    // wake-up an interval to send, whatever the number of peers.
    for a in 0..n {
        let mut rounds: Vec<Instant> = steady.iter().filter(|s| s.1 == a).map(|s| s.0).collect();
        rounds.dedup();
        assert!(
            rounds.len() <= most,
            "node {a} sent in {} rounds",
            rounds.len()
        );
    }
    for a in 0..n {
        for b in (0..n).filter(|&b| b != a) {
            let k = steady.iter().filter(|s| s.1 == a && s.2 == b).count();
            assert!((20..=most).contains(&k), "{a}->{b}: {k} in {window:?}");
        }
    }
}

#[test]
fn ready_goes_at_once_only_to_peers_that_wait_for_it() {
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(3));
    let (mut n, out) = node(3, 1, params(), t0);
    // Peer 2 runs with --barrier, peer 3 without.
    let mut waits = hb(fp, 2, 1, 9, 1);
    waits.flags.barrier = true;
    deliver(&mut n, addr(2), waits, t0 + MS);
    deliver(&mut n, addr(3), hb(fp, 3, 1, 9, 1), t0 + MS);
    let to2 = heartbeats_to(&out, addr(2))[0];
    let to3 = heartbeats_to(&out, addr(3))[0];
    let mut ack2 = ack_of(&to2, 9);
    ack2.flags.barrier = true;
    deliver(&mut n, addr(2), ack2, t0 + 2 * MS);
    let out = deliver(&mut n, addr(3), ack_of(&to3, 9), t0 + 2 * MS);
    assert!(has_ready(&out));
    let now2 = heartbeats_to(&out, addr(2));
    assert_eq!(now2.len(), 1, "{out:?}");
    assert!(now2[0].flags.ready && now2[0].ask);
    assert!(heartbeats_to(&out, addr(3)).is_empty(), "{out:?}");
}

#[test]
fn a_peer_that_was_heard_is_retried_on_the_round_trip_not_the_backoff() {
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, _) = node(2, 1, params(), t0);
    // Its first heartbeat comes after our start heartbeat was lost; our
    // answer asks for its acknowledgement, and is lost too.
    let at = t0 + Duration::from_millis(60);
    let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), at);
    assert!(heartbeats_to(&out, addr(2))[0].ask);
    let mut retries = Vec::new();
    while retries.len() < retransmit::FAST_RETRIES as usize {
        let now = n.next_deadline().unwrap();
        if !heartbeats_to(&step(&mut n, Input::Tick, now), addr(2)).is_empty() {
            retries.push(now);
        }
    }
    // Not measured yet: the first retry after the unmeasured timeout,
    // then at most four times that, far below the backoff for peers never
    // heard (which had reached 200 ms by then).
    let cap = retransmit::UNMEASURED_RTO * 4;
    let mut last = at;
    for (k, t) in retries.iter().enumerate() {
        assert!(*t - last <= cap, "retry {k} after {:?}", *t - last);
        last = *t;
    }
    assert!(retries[0] - at <= retransmit::UNMEASURED_RTO);
}

#[test]
fn a_peer_heard_again_after_its_retries_backed_off_is_retried_quickly_again() {
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, _) = node(2, 1, params(), t0);
    // As above: heard, asked, and every question or answer lost, until
    // the retries have backed off past the quick ones. Heard within the
    // interval, it is up and its answers are lost at random: it gets 24
    // quick retries, not 8, which at this round trip keep the backing off
    // past the interval.
    let at = t0 + Duration::from_millis(60);
    deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), at);
    let quick = retransmit::UNMEASURED_RTO * 4;
    let interval = params().interval;
    let mut last = at;
    let mut backed_off = false;
    while !backed_off {
        let now = n.next_deadline().unwrap();
        assert!(now < at + interval * 2, "never backed off");
        if !heartbeats_to(&step(&mut n, Input::Tick, now), addr(2)).is_empty() {
            backed_off = now - last > quick * 4;
            assert!(
                !backed_off || last - at >= interval,
                "backed off {:?} after it was heard",
                last - at
            );
            last = now;
        }
    }
    // Its next heartbeat, without the answer, comes long after our last
    // question: it is up, and our question was lost. Asked again at once,
    // and then on the quick schedule, not a backed-off one.
    let heard = last + Duration::from_millis(10);
    let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 2), heard);
    assert!(
        heartbeats_to(&out, addr(2)).iter().any(|m| m.ask),
        "{out:?}"
    );
    let next = loop {
        let now = n.next_deadline().unwrap();
        assert!(now < heard + Duration::from_secs(2), "never asked again");
        if !heartbeats_to(&step(&mut n, Input::Tick, now), addr(2)).is_empty() {
            break now;
        }
    };
    assert!(
        next - heard <= quick,
        "asked again after {:?}",
        next - heard
    );
}

/// A node of `peers` peers, each of which asks it at once and never hears
/// the answer: the instants of the retries it sends within `window` after
/// that, and to how many peers.
fn paced_retries(peers: usize, window: Duration) -> (Vec<Instant>, usize) {
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(peers + 1));
    let (mut n, _) = node(peers + 1, 1, params(), t0);
    let at = t0 + Duration::from_millis(60);
    for id in 2..=(peers as u16 + 1) {
        // Answered at once, unpaced: every answer asks, and all are lost.
        let out = deliver(&mut n, addr(id), hb(fp, id, 1, 9, 1), at);
        assert_eq!(heartbeats_to(&out, addr(id)).len(), 1);
    }
    let mut retries: Vec<Instant> = Vec::new();
    let mut to = std::collections::HashSet::new();
    while let Some(now) = n.next_deadline() {
        if now > at + window {
            break;
        }
        let out = step(&mut n, Input::Tick, now);
        for s in sends(&out) {
            retries.push(now);
            to.insert(s.0);
        }
    }
    (retries, to.len())
}

/// Over any stretch of `retries`: at most a burst plus `rate` a second.
fn assert_paced(retries: &[Instant], rate: f64) {
    use retransmit::RETRANSMIT_BURST;
    for (k, &start) in retries.iter().enumerate() {
        // Sorted: only the last retry within each allowance matters.
        for (m, &end) in retries.iter().enumerate().skip(k) {
            let allowed = f64::from(RETRANSMIT_BURST) + rate * (end - start).as_secs_f64() + 1.0;
            assert!(
                (m - k + 1) as f64 <= allowed,
                "{} retries in {:?}",
                m - k + 1,
                end - start
            );
        }
    }
}

#[test]
fn retransmissions_to_many_peers_are_paced() {
    // 400 peers: the node-wide 1 000 a second (2 a peer would be less).
    let peers = 400;
    let (retries, to) = paced_retries(peers, Duration::from_millis(600));
    assert_paced(&retries, 1000.0);
    assert_eq!(to, peers, "every peer is retried");
}

#[test]
fn the_pacer_grows_with_the_peers() {
    // 2 000 peers: 2 a second per peer, 4 000 a second. At 1 000 a second
    // a round of retries to all of them would take two seconds; at 4 000
    // it takes half of one.
    let peers = 2000;
    let (retries, to) = paced_retries(peers, Duration::from_millis(700));
    assert_paced(&retries, 4000.0);
    assert_eq!(to, peers, "every peer is retried within 0.7 s");
}

#[test]
fn retries_waiting_for_the_pacer_cost_nothing_until_their_turn() {
    // 400 peers owe us an answer at once: the pacer lets out one retry a
    // millisecond. A transition looks at the retries whose turn it is, not
    // at all that wait, so the peers looked at stay within a few per
    // datagram sent (looking at every waiting peer at each token would be
    // about 400 per datagram).
    let t0 = Instant::now();
    let peers = 400;
    let fp = hosts::fingerprint(&entries(peers + 1));
    let (mut n, _) = node(peers + 1, 1, params(), t0);
    let at = t0 + Duration::from_millis(60);
    for id in 2..=(peers as u16 + 1) {
        deliver(&mut n, addr(id), hb(fp, id, 1, 9, 1), at);
    }
    let examined = n.examined;
    let mut sent = 0;
    let mut wakes = 0;
    while let Some(now) = n.next_deadline() {
        if now > at + Duration::from_millis(600) {
            break;
        }
        wakes += 1;
        sent += sends(&step(&mut n, Input::Tick, now)).len() as u64;
    }
    assert!(sent >= peers as u64, "every peer is retried: {sent}");
    let looked = n.examined - examined;
    assert!(
        looked <= 3 * sent,
        "{looked} peers looked at for {sent} datagrams in {wakes} wake-ups"
    );
}

#[test]
fn a_question_taken_for_crossing_is_asked_again_when_its_answer_is_overdue() {
    // We start and ask the peer, which is not up yet (lost); it starts
    // half a millisecond later and asks us. Ours may be crossing its: the
    // answer does not ask again, and ours is asked again only once the
    // answer of a peer that is up is overdue, not when the crossing window
    // closes (a question lost before the peer started is made good by the
    // peer: see the next test).
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, _) = node(2, 1, params(), t0);
    let half = retransmit::UNMEASURED_CROSSING / 2;
    let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), t0 + half);
    let s = heartbeats_to(&out, addr(2));
    assert_eq!(s.len(), 1, "{out:?}");
    assert!(!s[0].ask);
    let next = n.next_deadline().unwrap();
    assert!(
        next >= t0 + retransmit::MIN_RTO,
        "asked again after {:?}",
        next - t0
    );
    let out = step(&mut n, Input::Tick, next);
    let s = heartbeats_to(&out, addr(2));
    assert_eq!(s.len(), 1, "{out:?}");
    assert!(s[0].ask);
}

#[test]
fn crossing_is_judged_by_when_the_datagram_reached_the_socket() {
    // The peer's first heartbeat reached our socket while our start
    // heartbeat could still be crossing it, but we got to it only 30 ms
    // later (a long receive queue, longer than an answer may take): still
    // crossing, so the answer does not ask again, nor does a retry go at
    // once, since our question may have waited as long in the peer's
    // queue.
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, _) = node(2, 1, params(), t0);
    let arrived = t0 + retransmit::UNMEASURED_CROSSING / 2;
    let message = Ok(hb(fp, 2, 1, 9, 1));
    let input = Input::Datagram {
        from: addr(2),
        message,
        arrived,
    };
    let now = t0 + 30 * MS;
    let out = step(&mut n, input, now);
    let s = heartbeats_to(&out, addr(2));
    assert_eq!(s.len(), 1, "{out:?}");
    assert!(!s[0].ask, "{out:?}");
    assert!(n.next_deadline().is_some_and(|t| t > now));
}

#[test]
fn a_heartbeat_from_a_peer_never_acknowledged_is_answered_unasked() {
    // Its heartbeat does not ask (it took its question for crossing ours),
    // but we have never acknowledged it, so it cannot have exchanged with
    // us: answered at once. Acknowledged, a heartbeat that does not ask
    // (and answers ours) waits for our next.
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, _) = node(2, 1, params(), t0);
    // (While our start heartbeat may still be crossing its, so that
    // nothing else makes us send.)
    let mut quiet = hb(fp, 2, 1, 9, 1);
    quiet.ask = false;
    let crossing = t0 + retransmit::UNMEASURED_CROSSING / 2;
    let out = deliver(&mut n, addr(2), quiet, crossing);
    let s = heartbeats_to(&out, addr(2));
    assert_eq!(s.len(), 1, "{out:?}");
    assert_eq!(s[0].ack(), Some((9, 1)));
    assert!(!s[0].ask);
    let mut again = hb(fp, 2, 1, 9, 2);
    again.ask = false;
    again.echo = s[0].incarnation;
    again.acked = s[0].seq;
    let out = deliver(&mut n, addr(2), again, crossing + MS);
    assert!(heartbeats_to(&out, addr(2)).is_empty(), "{out:?}");
}

#[test]
fn a_question_lost_before_the_peer_started_but_taken_for_crossing_costs_no_wait() {
    // Node 1 starts half a crossing window after node 0: node 0's start
    // heartbeat is lost, yet node 0 takes it for crossing node 1's and
    // answers without asking. Node 1, never having acknowledged node 0,
    // acknowledges that answer unasked: both READY one round trip after
    // node 1's start, on four datagrams (the lost one among them).
    let t0 = Instant::now();
    let mut net = Net::new(2, t0);
    net.start(0, params(), 100);
    let later = t0 + retransmit::UNMEASURED_CROSSING / 2;
    net.run_until(later);
    net.start(1, params(), 101);
    net.run_until(later + retransmit::MIN_RTO);
    net.assert_all_ready_within(later, 3 * net.latency);
    assert_eq!(net.sent.iter().sum::<usize>(), 4, "{:?}", net.log);
}

#[test]
fn an_answer_to_an_earlier_question_times_that_question() {
    // A heard peer answers 100 ms late (it is busy): by then we asked
    // again. The answer names the first question, so the round trip
    // measured is 100 ms, not the time since the retry; the next retry
    // waits accordingly.
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, _) = node(2, 1, params(), t0);
    let at = t0 + Duration::from_millis(60);
    let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), at);
    let first = heartbeats_to(&out, addr(2))[0];
    assert!(first.ask);
    let retry_at = n.next_deadline().unwrap();
    let out = step(&mut n, Input::Tick, retry_at);
    let retry = heartbeats_to(&out, addr(2))[0];
    assert!(retry.ask && retry.seq > first.seq);
    let late = at + Duration::from_millis(100);
    deliver(&mut n, addr(2), ack_of(&first, 9), late);
    let rto = n.peers[0].rtt.timeout().expect("a round trip measured");
    assert!(
        rto >= Duration::from_millis(100),
        "measured {rto:?}: the answer was timed from the retry"
    );
}
