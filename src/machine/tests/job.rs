//! The command run after READY: when it starts, what ends it, and what its
//! end makes of the node.

use super::*;

fn with_job(exit_on_down: bool) -> Params {
    Params {
        timeout: Duration::from_secs(5),
        job: Some(JobParams { exit_on_down }),
        ..params()
    }
}

#[test]
fn the_command_starts_at_ready_and_outlives_the_timeout() {
    let t0 = Instant::now();
    let p = with_job(false);
    let mut net = Net::new(3, t0);
    for i in 0..3 {
        net.start(i, p, 10 + i as u64);
    }
    net.run_until(t0 + Duration::from_secs(1));
    for i in 0..3 {
        let starts: Vec<_> = net.jobs.iter().filter(|(_, j, _)| *j == i).collect();
        assert_eq!(starts.len(), 1, "node {i}: {starts:?}");
        assert_eq!(starts[0].2, Action::StartJob);
        assert_eq!(
            Some(starts[0].0),
            net.ready_at[i],
            "node {i} starts it at READY"
        );
    }
    // Long past the timeout, the nodes still serve: nobody exits.
    net.run_until(t0 + p.timeout * 3);
    assert!(net.exits.iter().all(Option::is_none), "{:?}", net.exits);
    // The command's end is the node's, with its status, once its leave
    // is acknowledged.
    net.input(0, Input::JobEnded(JobEnd::Exited(3)));
    net.input(1, Input::JobEnded(JobEnd::Killed(9)));
    net.input(2, Input::JobEnded(JobEnd::NotStarted(127)));
    net.run_until(net.now + LEAVE_WAIT);
    assert_eq!(net.exits[0], Some(Reason::JobEnded(JobEnd::Exited(3))));
    assert_eq!(net.exits[0].unwrap().exit().code(), 3);
    assert_eq!(net.exits[1].unwrap().exit().code(), 137);
    assert_eq!(net.exits[2].unwrap().exit().code(), 127);
}

#[test]
fn with_barrier_the_command_starts_once_every_peer_is_ready() {
    let t0 = Instant::now();
    let p = Params {
        barrier: true,
        ..with_job(false)
    };
    let mut net = Net::new(3, t0);
    net.start(0, p, 10);
    net.start(1, p, 11);
    net.run_until(t0 + Duration::from_secs(1));
    assert!(net.jobs.is_empty(), "{:?}", net.jobs);
    let last = net.now;
    net.start(2, p, 12);
    net.run_until(last + Duration::from_secs(1));
    let started: Vec<usize> = net.jobs.iter().map(|(_, i, _)| *i).collect();
    assert_eq!(started.len(), 3, "{:?}", net.jobs);
    for (at, i, _) in &net.jobs {
        assert!(
            *at >= net.last_ready(),
            "node {i} started before every READY"
        );
    }
    net.run_until(last + p.timeout * 3);
    assert!(net.exits.iter().all(Option::is_none), "{:?}", net.exits);
}

#[test]
fn a_stop_signal_goes_to_the_command_and_its_end_is_the_exit() {
    let t0 = Instant::now();
    let (mut n, out) = node(1, 1, with_job(false), t0);
    assert!(out.contains(&Action::StartJob));
    let out = step(&mut n, Input::Stop(Stop::TERMINATE), t0 + MS);
    assert!(out.contains(&Action::SignalJob(15)), "{out:?}");
    assert_eq!(exit_of(&out), None, "the node waits for the command");
    let out = step(&mut n, Input::Stop(Stop::INTERRUPT), t0 + 2 * MS);
    assert!(out.contains(&Action::SignalJob(2)), "{out:?}");
    let out = step(&mut n, Input::JobEnded(JobEnd::Killed(15)), t0 + 3 * MS);
    assert_eq!(exit_of(&out).map(|r| r.exit().code()), Some(143));
    // Before the command starts, a signal stops the node as ever.
    let (mut n, _) = node(2, 1, with_job(false), t0);
    let out = step(&mut n, Input::Stop(Stop::TERMINATE), t0 + MS);
    assert!(!out.iter().any(|a| matches!(a, Action::SignalJob(_))));
    assert_eq!(exit_of(&out).map(|r| r.exit().code()), Some(143));
}

#[test]
fn a_leave_carrying_the_last_acknowledgement_completes_the_exchange() {
    // Peer 2 became READY and left at once (its command exited): its
    // acknowledgement of our heartbeat rode on its leave.
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, started) = node(2, 1, params(), t0);
    let ours = heartbeats_to(&started, addr(2))[0];
    deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), t0 + MS);
    let leave = ready_leave(Message {
        seq: 2,
        ..ack_of(&ours, 9)
    });
    let out = deliver(&mut n, addr(2), leave, t0 + 2 * MS);
    assert!(
        has_event(&out, |e| matches!(e, Event::Exchanged { .. })),
        "{out:?}"
    );
    assert!(
        has_event(&out, |e| matches!(e, Event::Left { .. })),
        "{out:?}"
    );
    assert!(has_ready(&out), "{out:?}");
    // A leave acknowledging a heartbeat never sent is dropped.
    let (mut n, _) = node(2, 1, params(), t0);
    deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), t0 + MS);
    let bogus = Message {
        acked: 999,
        ..leave
    };
    let out = deliver(&mut n, addr(2), bogus, t0 + 2 * MS);
    assert!(!has_ready(&out), "{out:?}");
    assert!(!has_event(&out, |e| matches!(e, Event::Left { .. })));
}

#[test]
fn signals_are_named_by_linux_numbers() {
    // signal(7), the x86/Arm column.
    let names = [
        (1, "SIGHUP"),
        (2, "SIGINT"),
        (6, "SIGABRT"),
        (9, "SIGKILL"),
        (11, "SIGSEGV"),
        (13, "SIGPIPE"),
        (15, "SIGTERM"),
        (17, "SIGCHLD"),
        (19, "SIGSTOP"),
        (28, "SIGWINCH"),
        (31, "SIGSYS"),
    ];
    for (n, name) in names {
        assert_eq!(Stop(n).name(), name);
    }
    assert_eq!(Stop(0).name(), "signal 0");
    assert_eq!(Stop(34).name(), "signal 34");
}

#[test]
fn listed_twice_while_the_command_runs_stops_it_and_then_exits_2() {
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, started) = node(2, 1, with_job(false), t0);
    let ours = heartbeats_to(&started, addr(2))[0];
    let mut out = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), t0 + MS);
    out.extend(deliver(&mut n, addr(2), ack_of(&ours, 9), t0 + MS));
    assert!(out.contains(&Action::StartJob), "{out:?}");
    // Our own heartbeat to entry 2 comes back to us: entry 2 is this
    // process too (its name now resolves to our address).
    let listed_twice = |a: &Action| matches!(a, Action::Event(Event::ListedTwice { .. }));
    let out = deliver(&mut n, addr(1), ours, t0 + 2 * MS);
    assert_eq!(out.iter().filter(|a| listed_twice(a)).count(), 1, "{out:?}");
    assert!(out.contains(&Action::SignalJob(15)), "{out:?}");
    assert_eq!(exit_of(&out), None, "the node waits for the command");
    // Said once, signalled once.
    let out = deliver(&mut n, addr(1), ours, t0 + 3 * MS);
    assert!(
        !out.iter()
            .any(|a| listed_twice(a) || matches!(a, Action::SignalJob(_)))
    );
    let mut out = step(&mut n, Input::JobEnded(JobEnd::Killed(15)), t0 + 4 * MS);
    if exit_of(&out).is_none() {
        out = run_to_exit(&mut n).1;
    }
    assert_eq!(exit_of(&out), Some(Reason::ListedTwice));
    assert_eq!(Reason::ListedTwice.exit().code(), 2);
}
